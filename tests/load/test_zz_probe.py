import sys

def test_name():
    print("MODULE NAME", __name__, sys.modules["load"].__file__)
