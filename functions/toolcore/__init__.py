"""Toolcore: tool registry, permissions and safe execution."""
