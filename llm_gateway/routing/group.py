"""A route served by several deployments, with fallbacks to other model names.

`DeploymentGroup` is the Backend the router gives such a route. A call tries the available
deployments in its strategy's order (strategies.py); a deployment's failure (failures.py) cools
it down (health.py) and the call moves on to the next one, but only before any byte of an
answer has been taken: an answer that has begun (a 2xx) is the answer. When every deployment
failed, or the request itself failed in a way another model can fix (its context is too long,
a content filter refused it), the call goes to the route's fallbacks for that reason, in
order: each another route's deployments (not that route's own fallbacks: one hop).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from llm_gateway.backends.base import Backend
from llm_gateway.call import Call, Result
from llm_gateway.config.routes import ModelRoute
from llm_gateway.errors import GatewayError, RateLimited, ServiceUnavailable
from llm_gateway.routing.deployment import Deployment
from llm_gateway.routing.events import RoutingEvents
from llm_gateway.routing.failures import Failure, of_error, of_result
from llm_gateway.routing.strategies import STRATEGIES
from llm_gateway.tracing import attempt as traced
from llm_gateway.usage import Usage

# model name -> (its route's backend, the name that backend must see); raises ModelNotFound
Resolve = Callable[[str], tuple[Backend, str]]
Answer = Result | GatewayError  # the last failed answer, given when nothing better came


class DeploymentGroup(Backend):
    def __init__(self, rule: ModelRoute, deployments: list[Deployment], resolve: Resolve,
                 events: RoutingEvents, rng: random.Random | None = None) -> None:
        self.rule = rule
        self.route = rule.name
        self.deployments = deployments
        first = deployments[0].backend
        # Labels and readiness name a real backend; what answered is on each Result.
        self.name = first.name
        self.local = all(d.backend.local for d in deployments)
        self.lists_models = False  # the route is listed by name (routing/catalog.py)
        self.reports_attempts = True  # each deployment's failures go to `events`
        self._order = STRATEGIES[rule.strategy]
        self._attempts = rule.max_attempts or len(deployments)
        self._resolve = resolve
        self.events = events
        self._rng = rng or random.Random()

    # -- the Backend seam ------------------------------------------------------------------
    async def complete(self, call: Call) -> Result:
        answer, failure, tried = await self.attempt(call)
        if failure is None:
            assert isinstance(answer, Result)
            return answer
        fallbacks = self.rule.fallbacks_for(failure.reason)
        for model in fallbacks:
            if call.may_use is not None and not call.may_use(model):
                continue  # the key may not use it: not a way around its model list
            backend, target = self._resolve(model)
            self.events.fell_back(self.route, model, failure.reason)
            call.target_model = target
            try:
                if isinstance(backend, DeploymentGroup):
                    found, again, more = await backend.attempt(call)
                else:
                    found, again, more = await _single(backend, call, self.events)
            except GatewayError as exc:  # the fallback's own error: it counts this route's too
                exc.attempts = tried + (1 if exc.attempts is None else exc.attempts)
                if isinstance(answer, Result):
                    await answer.aclose()
                raise
            tried += more
            if isinstance(answer, Result):
                await answer.aclose()
            answer = found
            if again is None:
                assert isinstance(found, Result)
                found.fallback = (failure.reason, model)
                found.attempts = tried
                return found
        if isinstance(answer, GatewayError):
            answer.attempts = tried  # every deployment (and fallback) tried, not just the last
            raise answer
        answer.attempts = tried
        return answer

    async def attempt(self, call: Call) -> tuple[Answer, Failure | None, int]:
        """This route's deployments, in order: the answer, or the last failure and why."""
        target = call.target_model or call.model
        order = self._order([d for d in self.deployments if d.available()], self._rng)
        if not order:
            return self._none_available(), Failure("rate_limit" if self._limited() else
                                                   "error", False), 0
        last: Answer | None = None
        failure: Failure | None = None
        tried = 0
        candidates = order[:self._attempts]
        for i, deployment in enumerate(candidates):
            if failure is not None:  # the one before failed: this is a retry
                self.events.retried(self.route, candidates[i - 1].name, failure.reason)
            tried += 1
            call.target_model = deployment.upstream_model or target
            principal = call.principal
            if principal is not None and principal.credentials:
                call.credentials = principal.credentials_for(deployment.backend.name)
            try:
                answer, failure = await self._try(deployment, call)
            except GatewayError as exc:  # the request's own error, raised: after `tried` calls
                exc.attempts = tried
                if isinstance(last, Result):
                    await last.aclose()
                raise
            if isinstance(last, Result):
                await last.aclose()
            last = answer
            if isinstance(answer, Result):
                answer.deployment = deployment.name
                answer.attempts = tried
            if failure is None or not failure.cools:
                return answer, failure, tried  # the answer, or the request's own failure
        assert last is not None and failure is not None
        return last, failure, tried

    async def _try(self, deployment: Deployment, call: Call) -> tuple[Answer, Failure | None]:
        health = deployment.health
        probe = health.begin()
        started = deployment.started()
        parent, span = traced.begin(call, deployment.backend.name, deployment.name)
        try:
            result = await deployment.backend.complete(call)
        except GatewayError as exc:
            traced.raised(call, parent, span, exc)
            self.events.raised(deployment.backend.name, exc)
            exc.backend = deployment.backend.name
            deployment.done()
            failure = of_error(exc)
            if failure is None:
                if probe:
                    health.ended_unjudged()
                raise
            self._failed(deployment, failure)
            return exc, failure
        except BaseException as exc:
            traced.raised(call, parent, span, exc)
            deployment.done()
            if probe:
                health.ended_unjudged()
            raise
        failure = of_result(result)
        traced.answered(call, parent, span, result,
                        failure.reason if failure is not None and failure.cools else None)
        self.events.answered(result.backend or deployment.backend.name, result.status)
        if failure is not None and failure.cools:
            deployment.done()
            self._failed(deployment, failure)
            return result, failure
        if health.failures or probe:
            health.succeeded()  # it answered: even a refusal of the request says it is up
            self.events.state(self.route, deployment.name, health.state())
        stream = result.stream is not None
        if not stream:
            deployment.answered(started)
        result.observe(deployment.watch(started, stream))
        return result, failure

    def _failed(self, deployment: Deployment, failure: Failure) -> None:
        if deployment.health.failed(failure.reason, failure.retry_after):
            self.events.state(self.route, deployment.name, deployment.health.state())

    def _limited(self) -> bool:
        return any(d.at_limit() or d.health.last_reason == "rate_limit"
                   for d in self.deployments)

    def _none_available(self) -> GatewayError:
        waits = [d.health.cooling_for() for d in self.deployments if not d.at_limit()]
        retry = max(1, round(min(waits))) if waits else 60
        headers = {"retry-after": str(retry)}
        message = (f"Every deployment of the model '{self.route}' is cooling down or at its "
                   f"limit; try again in {retry} s.")
        if self._limited():
            return RateLimited(message, code="deployments_unavailable", headers=headers)
        return ServiceUnavailable(message, code="deployments_unavailable", headers=headers)

    # -- the rest of the seam: what the deployments' backends say -----------------------------
    async def usage_of(self, call_id: str) -> Usage | None:
        return None  # the meter asks the backend that answered (Result.backend), not the route

    def problem(self) -> str | None:
        problems = [d.backend.problem() for d in self.deployments]
        if any(p is None for p in problems):
            return None
        return f"model '{self.route}': no deployment is ready ({problems[0]})"

    async def list_models(self) -> list[dict[str, Any]]:
        return []

    def snapshot(self) -> dict:
        return {"model": self.route, "strategy": self.rule.strategy,
                "deployments": [d.snapshot() for d in self.deployments]}


async def _single(backend: Backend, call: Call,
                  events: RoutingEvents) -> tuple[Answer, Failure | None, int]:
    """A fallback route with one backend: its answer, or its failure."""
    principal = call.principal
    if principal is not None and principal.credentials:
        call.credentials = principal.credentials_for(backend.name)
    parent, span = traced.begin(call, backend.name)
    try:
        result = await backend.complete(call)
    except BaseException as exc:
        traced.raised(call, parent, span, exc)
        if not isinstance(exc, GatewayError):
            raise
        events.raised(backend.name, exc)
        exc.backend = backend.name
        failure = of_error(exc)
        if failure is None:
            exc.attempts = 1
            raise
        return exc, failure, 1
    failure = of_result(result)
    traced.answered(call, parent, span, result, failure.reason if failure else None)
    events.answered(result.backend or backend.name, result.status)
    return result, failure, 1
