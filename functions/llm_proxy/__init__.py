"""LLM Proxy: the one door for every LLM call of every DAARION agent."""
