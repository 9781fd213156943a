"""Tool calls in the model's own syntax: rendering, grammars, parsing, streaming (see
`plan` for what a request asks, `stream` for what goes out)."""
