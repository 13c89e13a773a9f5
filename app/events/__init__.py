"""Events: every state change of a run or a host, kept in the database and streamed (SSE)."""
