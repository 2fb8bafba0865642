"""One data plane every protocol calls: loaded models, metadata, and `infer` on numpy tensors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pallet.errors import InvalidInput, ModelNotFound
from pallet.model import Model
from pallet.rollout.figures import VersionTraffic, compare
from pallet.rollout.state import Rollout
from pallet.serve import classification, metrics
from pallet.serve.batcher import Batcher, timed
from pallet.serve.cache import CacheUnavailable, cache_key, make_cache
from pallet.serve.errors import ModelNotReady, NonFiniteOutput, Overloaded, PayloadTooLarge
from pallet.threads import plan_threads
from pallet.serve.types import InferenceRequest, InferenceResponse
from pallet.settings import ServeConfig
from pallet.signature import Signature
from pallet.store import ModelRef, Store

log = logging.getLogger("pallet.serve")
SHADOWS_IN_FLIGHT = 64   # copies waiting or running at once; more are dropped, never queued


@dataclass
class Loaded:
    model: Model
    executor: ThreadPoolExecutor   # model code runs here, never on the event loop
    batcher: Batcher | None        # None: each request is its own predict call
    in_flight: int = 0             # requests waiting or running, for load shedding


def _release(loaded: Loaded) -> None:
    """Stop a version's batcher and executor; its model is closed once the requests already queued ran."""
    if loaded.batcher:
        loaded.batcher.close()
    loaded.executor.submit(loaded.model.close)
    loaded.executor.shutdown(wait=False)


class DataPlane:
    def __init__(self, store: Store, config: ServeConfig):
        self.store = store
        self.config = config
        self.models: dict[str, dict[str, Loaded]] = {}   # name -> version -> loaded model
        self.default: dict[str, str] = {}                 # name -> version served under the bare name
        self.unloaded: set[str] = set()
        self.failed: dict[str, str] = {}   # name -> why it could not be loaded (pallet serve --skip-unloadable)
        self.rollouts: dict[str, Rollout] = {}            # name -> its rollout (traffic policy), when it has one
        self.figures: dict[str, dict[str, VersionTraffic]] = {}  # name -> version -> counted at the rollout's revision
        self.shadow_tasks: set[asyncio.Task] = set()
        self.draining = False  # stopping: not ready, though still answering
        self.cache = make_cache(config.cache, config.cache_ttl)
        self.threads = plan_threads(config.workers, config.threads)

    # -- lifecycle ------------------------------------------------------------------------

    def load(self, ref: str | ModelRef) -> Model:
        """Load a stored version and warm it with a prediction on its sample; the first version
        loaded under a name answers for the bare name (unless a rollout says otherwise)."""
        return self.register(self.prepare(ref))

    def prepare(self, ref: str | ModelRef) -> Model:
        """Read, verify, load and warm a version; touches nothing the event loop reads, so it may
        run on another thread while the server answers. `register` then makes it servable."""
        version = self.store.resolve(ref)
        started = time.perf_counter()
        model = Model(version, **self.threads.runtime_options())
        name, number = version.ref.name, str(version.ref.version)
        if hasattr(model.runtime, "on_step"):  # a pipeline: time each step
            model.runtime.on_step = lambda step, seconds: metrics.PIPELINE_STEP.labels(name, number, step).observe(seconds)
        model.predict(version.sample())
        metrics.MODEL_LOAD_SECONDS.labels(name, number).set(time.perf_counter() - started)
        metrics.MODEL_SIZE.labels(name, number).set(version.manifest.size_bytes)
        return model

    def register(self, model: Model) -> Model:
        name, number = model.ref.name, str(model.ref.version)
        previous = self.models.setdefault(name, {}).get(number)
        if previous:  # a reload: requests already queued or running keep their executor and batcher
            previous.executor.submit(previous.model.close)  # after the requests queued for the old one
            previous.model = model
            if previous.batcher:
                previous.batcher.run = model.run
        else:
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{name}")
            self.models[name][number] = Loaded(model, executor, self._batcher(model, executor))
        self.default.setdefault(name, number)
        self.unloaded.discard(name)
        self.failed.pop(name, None)
        return model

    def unload(self, name: str) -> None:
        versions = self.models.pop(name, None)
        if versions is None:
            raise ModelNotFound(f"model '{name}' is not loaded; loaded: {self._loaded_names()}")
        self.default.pop(name, None)
        self.rollouts.pop(name, None)
        self.figures.pop(name, None)
        self.unloaded.add(name)
        for loaded in versions.values():
            _release(loaded)

    async def retire(self, name: str, number: str, grace_seconds: float = 120) -> None:
        """Stop routing to one version, then close it once its requests in flight have finished."""
        loaded = self.models.get(name, {}).pop(number, None)
        if loaded is None:
            return
        waited = 0.0
        while loaded.in_flight and waited < grace_seconds:
            await asyncio.sleep(0.05)
            waited += 0.05
        _release(loaded)

    def apply(self, rollout: Rollout) -> None:
        """Route `rollout.name` by the rollout's policy; every version it names must be loaded."""
        versions = self.models[rollout.name]
        missing = [v for v in rollout.policy.versions if v not in versions]
        if missing:
            raise ModelNotReady(f"model '{rollout.name}' version {missing[0]} is not loaded")
        previous = self.rollouts.get(rollout.name)
        if previous is None or previous.revision != rollout.revision:
            self.figures[rollout.name] = {}
        self.rollouts[rollout.name] = rollout
        shares = rollout.policy.shares()  # metadata and the pages speak for a version that gets traffic
        self.default[rollout.name] = rollout.stable if rollout.stable in shares else max(shares, key=shares.get)

    def _batcher(self, model: Model, executor: ThreadPoolExecutor) -> Batcher | None:
        size = self.config.max_batch_size
        if size <= 1 or not model.runtime.batchable:
            return None
        name, number = model.ref.name, str(model.ref.version)
        sizes, waits = metrics.BATCH_SIZE.labels(name, number), metrics.BATCH_WAIT.labels(name, number)

        def observe(rows: int, wait: float) -> None:
            sizes.observe(rows)
            waits.observe(wait)
            metrics.executed(name, number, rows)

        return Batcher(model.run, executor, size, self.config.max_latency_ms, observe)

    def close(self) -> None:
        for name in list(self.models):
            self.unload(name)

    # -- lookup ---------------------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> Model:
        return self._get(name, version).model

    def route(self, name: str, version: str | None = None, headers: Mapping[str, str] | None = None) -> Model:
        """The version that answers a request: the one asked for, else the one the name's traffic
        policy picks (by the sticky header when the policy has one), else the default."""
        return self._pick(name, version, headers).model

    def _pick(self, name: str, version: str | None, headers: Mapping[str, str] | None = None) -> Loaded:
        if version is None:
            rollout = self.rollouts.get(name)
            if rollout is not None:
                policy = rollout.policy
                key = headers.get(policy.sticky_key) if policy.sticky_key and headers is not None else None
                version = policy.choose(key)
        return self._get(name, version)

    def _get(self, name: str, version: str | None) -> Loaded:
        versions = self.models.get(name)
        if versions is None and name in self.failed:
            raise ModelNotReady(f"model '{name}' could not be loaded: {self.failed[name]}")
        if versions is None:
            state = " (it was unloaded)" if name in self.unloaded else ""
            raise ModelNotFound(f"model '{name}' is not loaded on this server{state}; loaded: {self._loaded_names()}")
        key = version if version is not None else self.default[name]
        if key not in versions:
            raise ModelNotFound(f"model '{name}' has no version '{key}' loaded; loaded versions: "
                                f"{', '.join(sorted(versions, key=_version_key))}")
        return versions[key]

    def names(self) -> list[str]:
        return sorted(self.models)

    def versions(self, name: str) -> list[str]:
        self._get(name, None)
        return sorted(self.models[name], key=_version_key)

    def index(self) -> list[dict]:
        """Every model this server knows: loaded versions and unloaded names."""
        rows = [{"name": name, "version": number, "state": "READY", "reason": ""}
                for name in self.names() for number in self.versions(name)]
        rows += [{"name": name, "version": "", "state": "UNAVAILABLE", "reason": "unloaded"}
                 for name in sorted(self.unloaded)]
        rows += [{"name": name, "version": "", "state": "UNAVAILABLE", "reason": why}
                 for name, why in sorted(self.failed.items())]
        return rows

    def ready(self) -> bool:
        return bool(self.models) and not self.draining

    # -- inference ------------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        """Answer one request. Its latency is counted by whoever received it (`observe`), timed
        once from first byte to response, so every figure of it reads the same measurement."""
        name = request.model
        loaded = self._pick(name, request.version)
        self._admit(loaded, name)
        try:
            response, arrays = await self._infer(loaded, request)
        finally:
            loaded.in_flight -= 1
        rollout = self.rollouts.get(name)
        if rollout is not None and request.outputs is None:
            shadow = rollout.policy.shadows(response.model_version)
            if shadow is not None:
                self._start_shadow(name, shadow, arrays, response.outputs)
        return response

    def observe(self, model: str, version: str, protocol: str, status: int, seconds: float) -> None:
        """Count one inference request, timed once where it came in (the HTTP middleware, the gRPC
        handler): in the server's metrics (the dashboard and `pallet bench` read them) and, while
        `model` has a rollout, in its version's figures (`pallet rollout status` and the canary read
        them), sorted as the dashboard sorts them (`metrics.outcome`). Bad input (4xx) and shed load
        (503) are counted there but not judged: they are not the version's doing."""
        metrics.observe(model, version, protocol, status, seconds)
        counted = self.figures.get(model)
        if counted is None:
            return
        traffic = counted.get(version)
        if traffic is None:
            traffic = counted[version] = VersionTraffic()
        kind = metrics.outcome(str(status))
        if kind == "client_errors" or status == 503:
            traffic.refused(client_error=kind == "client_errors")
        else:
            traffic.observe(seconds, kind is None)

    async def _infer(self, loaded: Loaded, request: InferenceRequest) -> tuple[InferenceResponse, dict]:
        arrived = time.perf_counter()
        model = loaded.model
        arrays = model.signature.validate(request.inputs)
        elements = sum(array.size for array in arrays.values())
        if elements > self.config.max_elements:
            raise PayloadTooLarge(f"the request has {elements} values in its inputs; this server takes at most "
                                  f"{self.config.max_elements} (pallet serve --max-elements)")
        rows = len(next(iter(arrays.values())))
        if rows > self.config.max_rows:
            raise InvalidInput(f"the request has {rows} rows; this server takes at most {self.config.max_rows} "
                               "per request (pallet serve --max-rows)")
        if request.outputs is not None:
            known = [s.name for s in model.signature.outputs]
            for name in request.outputs:
                if name not in known:
                    raise InvalidInput(f"unknown output '{name}' requested; model '{request.model}' gives: "
                                       f"{', '.join(known)}")
        classification.check(request.model, model.signature, request.classification)
        name, number = model.ref.name, str(model.ref.version)
        key = cache_key(name, number, arrays) if self.cache is not None else None
        outputs = None
        if key:
            try:
                outputs = await self.cache.get(key)
                metrics.CACHE.labels(name, number, "hit" if outputs is not None else "miss").inc()
            except CacheUnavailable:  # served without the cache, and counted
                key = None
                metrics.CACHE_BYPASS.labels(name, number, "unavailable").inc()
        timing: dict[str, float] = {}
        if outputs is None:
            ready = time.perf_counter()
            outputs = await self._run(loaded, request.model, arrays, timing)
            check_finite(request.model, model.signature, outputs)  # before the cache keeps it or a codec sees it
            if key:
                await self.cache.set(key, outputs)
        if request.outputs is not None:
            outputs = {wanted: outputs[wanted] for wanted in request.outputs}
        outputs = classification.apply(model.signature, outputs, request.classification)
        if timing:  # Triton's statistics: the stages of a request that reached predict
            metrics.staged(name, number, compute_input=ready - arrived, queue=timing["started"] - ready,
                           compute_infer=timing["finished"] - timing["started"],
                           compute_output=time.perf_counter() - timing["finished"])
        return InferenceResponse(name, number, outputs, request.id), arrays

    def _admit(self, loaded: Loaded, name: str) -> None:
        """Count a request against the version from routing to answer (the caller takes it off):
        load shedding, and a version is closed only when none holds it."""
        if loaded.in_flight >= self.config.max_queue:
            raise Overloaded(f"model '{name}' has {loaded.in_flight} requests waiting or running, "
                             f"its limit (--max-queue {self.config.max_queue}); retry shortly")
        loaded.in_flight += 1

    async def _run(self, loaded: Loaded, name: str, arrays: dict, timing: dict[str, float] | None = None) -> dict:
        """The model's outputs; `timing` gets when the predict call that answered started and finished."""
        timing = {} if timing is None else timing
        try:
            if loaded.batcher is not None:
                return await loaded.batcher.submit(arrays, timing)
            loop = asyncio.get_running_loop()
            model = loaded.model
            metrics.executed(model.ref.name, str(model.ref.version), len(next(iter(arrays.values()))))
            return await loop.run_in_executor(loaded.executor, timed, model.run, arrays, timing)
        except RuntimeError:  # the executor was shut down: the model was unloaded meanwhile
            raise ModelNotReady(f"model '{name}' was unloaded while this request was in flight") from None

    # -- shadow traffic: copies of answered requests, off the request path ---------------------

    def _start_shadow(self, name: str, number: str, arrays: dict, served: dict) -> None:
        if len(self.shadow_tasks) >= SHADOWS_IN_FLIGHT:
            return
        task = asyncio.create_task(self._shadow(name, number, arrays, served))
        self.shadow_tasks.add(task)
        task.add_done_callback(self.shadow_tasks.discard)

    async def _shadow(self, name: str, number: str, arrays: dict, served: dict) -> None:
        loaded = self.models.get(name, {}).get(number)
        if loaded is None or loaded.in_flight >= self.config.max_queue // 2:
            return  # shadows never take the last half of a version's queue
        try:
            arrays = loaded.model.signature.validate(arrays)
        except InvalidInput:
            return  # the candidate takes other inputs: nothing to compare, and not its failure
        started, compared, agreed, ok = time.perf_counter(), 0, 0, True
        try:
            self._admit(loaded, name)
            try:
                outputs = await self._run(loaded, name, arrays)
            finally:
                loaded.in_flight -= 1
            rollout = self.rollouts.get(name)
            tolerance = rollout.canary.thresholds.tolerance if rollout and rollout.canary else 0.01
            compared, agreed = await asyncio.to_thread(compare, served, outputs, tolerance)
        except Exception as e:  # a shadow's failure is counted, never raised to anyone
            ok = False
            log.debug("shadow request to %s:%s failed: %s", name, number, e)
        counted = self.figures.get(name)
        if counted is not None:
            counted.setdefault(number, VersionTraffic()).observe_shadow(time.perf_counter() - started, ok, compared, agreed)

    def _loaded_names(self) -> str:
        return ", ".join(self.names()) or "none"


def check_finite(model: str, signature: Signature, outputs: Mapping[str, np.ndarray]) -> None:
    """Refuse an answer holding NaN or infinity in a float output whose spec allows none (JSON has no
    such numbers, and the other outputs of those rows, a label, are as broken): `NonFiniteOutput`
    names the model, the output and the rows."""
    allowed = {spec.name for spec in signature.outputs if spec.allow_nan}
    for name, array in outputs.items():
        array = np.asarray(array)
        if array.dtype.kind != "f" or name in allowed or not array.size:
            continue
        with np.errstate(all="ignore"):
            if np.isfinite(array.sum()):  # the fast test; look for where only when it fails
                continue
        bad = ~np.isfinite(array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1))
        rows = np.flatnonzero(bad.any(axis=1))
        if rows.size:
            shown = ", ".join(map(str, rows[:10].tolist())) + (f" and {rows.size - 10} more" if rows.size > 10 else "")
            raise NonFiniteOutput(f"{model} answered with non-finite values (NaN or infinity) in output '{name}' at "
                                  f"rows {shown}: the input is likely outside what the model handles")


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)
