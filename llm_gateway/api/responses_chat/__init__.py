"""The Responses API for backends that speak only chat completions.

A `POST /v1/responses` whose model is served by a backend without the Responses API (a local
pool, an upstream with `responses_api: false`, a chat-only provider: `Backend.responses_api`)
is answered by the gateway itself: the request becomes a chat completions call
(`request.py`, its input items in `items.py`), which goes the usual way (limits, grouping,
routing, the meter and the ledger count it as chat), and the chat answer becomes a response
object (`output.py`) or the Responses event stream (`stream.py`, an observer of the chat
answer's relay). A response with `store` not false is kept by the gateway, per team, in the
database (`store.py`), so that `previous_response_id`, `GET`/`DELETE /v1/responses/{id}` and
`input_items` work for it (`create.py`, `stored.py`).
"""
