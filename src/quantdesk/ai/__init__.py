"""The AI assistant: conversations grounded in the platform's data, strategy analysis, advice."""
