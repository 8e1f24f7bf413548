"""The bounded pool that runs the network: a queue of image ids and a fixed number of
worker threads (never a thread per request). onnxruntime releases the GIL, so a worker
uses the cores while the server keeps answering.

A job reads the validated input the upload handler stored, runs the model once (tiled),
writes the residual maps and only then marks the image ``done``; any failure marks it
``failed`` with a one-line reason. On start, :meth:`Jobs.recover` puts back every job a
crash left ``queued`` or ``running``: it is finished after the restart, never left
half-written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np

from data_gen.core.errors import InputError
from residual_train.deploy.compose import slopes
from residual_train.serve.store import ImageStore

log = logging.getLogger("residual_train.serve")

INTERRUPTED_UPLOAD = (
    "the server stopped before this upload was completely stored; nothing was computed: "
    "upload the image again"
)


class Jobs:
    def __init__(
        self,
        store: ImageStore,
        model,
        workers: int = 1,
        queue_size: int = 8,
        tile: int = 256,
        overlap: int = 64,
    ) -> None:
        self.store, self.model = store, model
        self.tile, self.overlap = tile, overlap
        self.q: queue.Queue[str] = queue.Queue(maxsize=max(1, queue_size))
        self.running = 0
        self.network_runs = 0  # jobs that ran the network (renders never add to it)
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._work, name=f"rt-job-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self.threads:
            t.start()

    def submit(self, image_id: str) -> bool:
        """Queue a job; False when the queue is full (the caller answers 503)."""
        try:
            self.q.put_nowait(image_id)
            return True
        except queue.Full:
            return False

    def full(self) -> bool:
        return self.q.full()

    def recover(self) -> list[str]:
        """Re-queue the jobs an earlier server left unfinished (in a thread: the queue may
        be smaller than what waits). A job whose input was never completely stored (the
        server died during the upload) cannot run: it is failed with the reason."""
        todo = []
        for r in self.store.all():
            if r.status not in ("queued", "running"):
                continue
            if not self.store.has_arrays(r.id, ["input"]):
                self.store.update(r.id, status="failed", error=INTERRUPTED_UPLOAD)
                continue
            todo.append(r.id)
            self.store.update(r.id, status="queued", note="resumed after a server restart")

        def feed() -> None:
            for i in todo:
                self.q.put(i)

        threading.Thread(target=feed, name="rt-recover", daemon=True).start()
        return todo

    def _work(self) -> None:
        while True:
            image_id = self.q.get()
            with self._lock:
                self.running += 1
            try:
                self.run(image_id)
            except Exception:  # the worker outlives any one job, whatever went wrong
                log.exception("job %s: the worker caught an error", image_id)
            finally:
                with self._lock:
                    self.running -= 1
                self.q.task_done()

    def run(self, image_id: str) -> None:
        r = self.store.update(image_id, status="running")
        if r is None:  # deleted while queued
            return
        t0 = time.perf_counter()
        with self._lock:
            self.network_runs += 1
        try:
            x = np.asarray(self.store.arrays(image_id, ["input"])["input"])
            maps = self.model.predict(x, tile=self.tile, overlap=self.overlap, iso=r.iso)
            # the gains' slopes depend on the maps only: estimated once, read by every render
            sl = {f"S_{k}": v[None] for k, v in slopes(x, maps).items()}
            self.store.save_arrays(image_id, {**{f"R_{k}": v for k, v in maps.items()}, **sl})
        except InputError as e:
            self.store.update(image_id, status="failed", error=" ".join(str(e).split()))
            return
        except FileNotFoundError as e:
            if self.store.meta(image_id) is not None:  # not deleted: a file went missing
                self.store.update(image_id, status="failed", error=f"missing file: {e}")
            return  # else deleted while running
        except Exception as e:  # reported to the client, never a hung "running"
            log.exception("job %s failed", image_id)
            self.store.update(
                image_id, status="failed", error=f"internal error {type(e).__name__}: {e}"
            )
            return
        self.store.update(image_id, status="done", network_seconds=time.perf_counter() - t0)
