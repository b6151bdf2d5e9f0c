"""What the services answer, as typed objects (unknown fields are kept, not rejected): the contracts' own
models, re-exported under the names callers import. The client declares no wire model of its own."""

from __future__ import annotations

# ---------------------------------------------------------------- LLM Proxy
# The contracts' own response models (unknown fields kept); the old names stay importable.
from daarion_contracts import llm as _llm

ChatCompletion = _llm.ChatCompletion
EmbeddingList = _llm.EmbeddingList
InternalEmbeddings = _llm.InternalEmbeddings
ModelCatalogue = _llm.ModelCatalogue
ModelList = _llm.ModelList
ProxyResponse = _llm.ProxyResponse
TokenUsage = _llm.TokenUsage
UsageReport = _llm.UsageReport

ChatResult = ProxyResponse
"""``POST /internal/llm/proxy``'s reply."""
Usage = TokenUsage


# ---------------------------------------------------------------- Memory
# The contracts' own models, under the names callers import (no wire model is declared here).
from daarion_contracts import memory as _memory  # noqa: E402

MemoryItem = _memory.MemoryItem
MemoryMeta = _memory.MemoryMeta
QueryResponse = _memory.QueryResponse
StoreResponse = _memory.StoreResponse
SummarizeResponse = _memory.SummarizeResponse
ForgetResponse = _memory.ForgetResponse
DocumentResponse = _memory.DocumentResponse
DocumentInfo = _memory.DocumentInfo
DocumentList = _memory.DocumentList
DocumentDeleted = _memory.DocumentDeleted


# ---------------------------------------------------------------- Toolcore
# The contracts' models (one definition for the service and the client); the old names stay importable.
from daarion_contracts.tools import OpenAITool as OpenAITool  # noqa: E402
from daarion_contracts.tools import OpenAIToolListing as OpenAIToolListing  # noqa: E402
from daarion_contracts.tools import ToolCallError as ToolCallError  # noqa: E402
from daarion_contracts.tools import ToolCallResponse as ToolCallResponse  # noqa: E402

ToolError = ToolCallError
ToolResult = ToolCallResponse
"""``POST /internal/tools/call``'s reply. A tool's own failure is ``ok=False`` with ``error``, not an exception."""
ToolListing = OpenAIToolListing
"""``GET /internal/tools?format=openai``: ``tools`` for ``tools=`` and the OpenAI name -> tool id map."""
