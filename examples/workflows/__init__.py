"""The AI-workflow loop end to end on the embedded broker: ``python -m examples.workflows.run``."""
