"""The conformance suite's test modules (see conformance/plugin.py for the layout)."""
