"""AI assistant tests: conversations, tools, streaming, provider errors, analysis and limits."""
