"""The sandbox: a client (`client.Sandbox`) owns fork servers (`forkserver`) whose children run untrusted calls
(`calls`) behind the isolation layers (`isolation`, `landlock`), speaking a framed protocol (`wire`)."""
