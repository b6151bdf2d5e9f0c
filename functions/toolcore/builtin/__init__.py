"""Toolcore's built-in tools: the only Python functions the registry may name (``module:function``).

Each tool is ``function(args: dict, context: dict) -> JSON value``, sync or async. Nothing outside this
package is reachable through the registry.
"""
