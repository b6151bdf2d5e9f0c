"""Memory Orchestrator: short, mid and long-term memory for agents on PostgreSQL + pgvector."""
