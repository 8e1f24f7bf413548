"""The service's routes, one :class:`fastapi.APIRouter` per job: :mod:`.pages` (the page
and ``/healthz``), :mod:`.images` (uploads, their status, deletion), :mod:`.renders`
(compositions and maps of a finished image), :mod:`.registry` (weights for devices)."""
