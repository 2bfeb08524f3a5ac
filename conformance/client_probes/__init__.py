"""The official clients as users: scripted scenarios run through ollama-python, openai, anthropic (in-process)
and the `ollama` and `openai` npm packages (node), against the target. What a user asks first is "will my client
work against it": each scenario passes only when the client itself completes it, and a failure names the client
call that broke and the exception the client raised.

Results form the `clients` section of the check results (conformance/results.schema.json).
"""
