"""One data plane every protocol calls: loaded models, metadata, and `infer` on numpy tensors."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pallet.errors import InvalidInput, ModelNotFound
from pallet.model import Model
from pallet.serve import metrics
from pallet.serve.config import ServeConfig
from pallet.serve.batcher import Batcher
from pallet.serve.cache import cache_key, make_cache
from pallet.serve.errors import ModelNotReady, Overloaded
from pallet.serve.threads import plan_threads
from pallet.serve.types import InferenceRequest, InferenceResponse
from pallet.store import ModelRef, Store


@dataclass
class Loaded:
    model: Model
    executor: ThreadPoolExecutor   # model code runs here, never on the event loop
    batcher: Batcher | None        # None: each request is its own predict call
    in_flight: int = 0             # requests waiting or running, for load shedding


class DataPlane:
    def __init__(self, store: Store, config: ServeConfig):
        self.store = store
        self.config = config
        self.models: dict[str, dict[str, Loaded]] = {}   # name -> version -> loaded model
        self.default: dict[str, str] = {}                 # name -> version served under the bare name
        self.unloaded: set[str] = set()
        self.cache = make_cache(config.cache, config.cache_ttl_seconds)
        self.threads = plan_threads(config.workers, config.threads)

    # -- lifecycle ------------------------------------------------------------------------

    def load(self, ref: str | ModelRef) -> Model:
        """Load a stored version; the first version loaded under a name answers for the bare name."""
        version = self.store.resolve(ref)
        started = time.perf_counter()
        model = Model(version, **self.threads.runtime_options())
        name, number = version.ref.name, str(version.ref.version)
        metrics.MODEL_LOAD_SECONDS.labels(name, number).set(time.perf_counter() - started)
        previous = self.models.setdefault(name, {}).get(number)
        if previous:  # a reload: requests already queued or running keep their executor and batcher
            previous.model = model
            if previous.batcher:
                previous.batcher.run = model.run
        else:
            executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{name}")
            self.models[name][number] = Loaded(model, executor, self._batcher(model, executor))
        self.default.setdefault(name, number)
        self.unloaded.discard(name)
        return model

    def unload(self, name: str) -> None:
        versions = self.models.pop(name, None)
        if versions is None:
            raise ModelNotFound(f"model '{name}' is not loaded; loaded: {self._loaded_names()}")
        self.default.pop(name, None)
        self.unloaded.add(name)
        for loaded in versions.values():
            if loaded.batcher:
                loaded.batcher.close()
            loaded.executor.shutdown(wait=False)

    def _batcher(self, model: Model, executor: ThreadPoolExecutor) -> Batcher | None:
        size = self.config.max_batch_size
        if size <= 1 or not model.runtime.batchable:
            return None
        name, number = model.ref.name, str(model.ref.version)
        sizes, waits = metrics.BATCH_SIZE.labels(name, number), metrics.BATCH_WAIT.labels(name, number)

        def observe(rows: int, wait: float) -> None:
            sizes.observe(rows)
            waits.observe(wait)

        return Batcher(model.run, executor, size, self.config.max_latency_ms, observe)

    def close(self) -> None:
        for name in list(self.models):
            self.unload(name)

    # -- lookup ---------------------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> Model:
        return self._get(name, version).model

    def _get(self, name: str, version: str | None) -> Loaded:
        versions = self.models.get(name)
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
        return rows

    def ready(self) -> bool:
        return bool(self.models)

    # -- inference ------------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        loaded = self._get(request.model, request.version)
        model = loaded.model
        arrays = model.signature.validate(request.inputs)
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
        name, number = model.ref.name, str(model.ref.version)
        key = cache_key(name, number, arrays) if self.cache is not None else None
        outputs = await self.cache.get(key) if key else None
        if key:
            metrics.CACHE.labels(name, number, "hit" if outputs is not None else "miss").inc()
        if outputs is None:
            outputs = await self._run(loaded, request.model, arrays)
            if key:
                await self.cache.set(key, outputs)
        if request.outputs is not None:
            outputs = {wanted: outputs[wanted] for wanted in request.outputs}
        return InferenceResponse(name, number, outputs, request.id)

    async def _run(self, loaded: Loaded, name: str, arrays: dict) -> dict:
        if loaded.in_flight >= self.config.max_queue:
            raise Overloaded(f"model '{name}' has {loaded.in_flight} requests waiting or running, "
                             f"its limit (--max-queue {self.config.max_queue}); retry shortly")
        loaded.in_flight += 1
        try:
            if loaded.batcher is not None:
                return await loaded.batcher.submit(arrays)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(loaded.executor, loaded.model.run, arrays)
        except RuntimeError:  # the executor was shut down: the model was unloaded meanwhile
            raise ModelNotReady(f"model '{name}' was unloaded while this request was in flight") from None
        finally:
            loaded.in_flight -= 1

    def _loaded_names(self) -> str:
        return ", ".join(self.names()) or "none"


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)
