"""DAARION's wire contracts, one typed source for both sides: the Lambda functions declare their routes
with these models (``response_model=``, ``responses=``) and ``daarion-client`` builds requests and parses
answers with the very same classes.

- :mod:`daarion_contracts.types`: identifiers, text rules, strict numbers, the request base class;
- :mod:`daarion_contracts.errors`: the error body and the error codes;
- :mod:`daarion_contracts.llm`, :mod:`daarion_contracts.memory`, :mod:`daarion_contracts.tools`: each
  service's route paths, requests and responses.

Pydantic only: agent-runtime installs it with the client, without anything Lambda-specific.
"""

__version__ = "0.1.0"
