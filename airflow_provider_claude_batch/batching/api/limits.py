"""Every Message Batches API limit and rule, in one place."""

from __future__ import annotations

import re
from datetime import timedelta

from airflow_provider_claude_batch.exceptions import ClaudeBatchInputError

#: Most requests one batch may hold.
MAX_REQUESTS_PER_BATCH = 100_000
#: Largest serialized create body, in bytes (the API answers 413 beyond it).
MAX_BYTES_PER_BATCH = 256 * 1024 * 1024
#: custom_id: 1-64 characters of letters, digits, "_" and "-"; unique within a batch.
CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CUSTOM_ID_MAX_LENGTH = 64
#: A batch stops processing (remaining requests expire) this long after creation.
BATCH_EXPIRY_HOURS = 24
#: Results stay downloadable this long after creation, then the batch is archived.
RESULTS_RETENTION_DAYS = 29
#: ``limit`` accepted by GET /v1/messages/batches.
LIST_PAGE_MAX = 1000
LIST_PAGE_DEFAULT = 20

#: A batch's server-side ``created_at`` may differ from this machine's clock by this much.
CLOCK_SKEW = timedelta(seconds=30)

#: Per-request error types worth resubmitting in a later round.
RETRYABLE_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error"})
#: How the API says a request's ``file_id`` names no file of its workspace (an
#: ``invalid_request_error``): sent again, the file is uploaded again (``uploads``), so it is
#: retryable too.
FILE_NOT_FOUND = "File not found"
#: HTTP statuses after which a create may or may not have happened.
AMBIGUOUS_CREATE_STATUSES = frozenset({408, 409, 500, 502, 503, 504})
#: Of those, the ones the API itself answered: it is done with the request, so one lookup
#: decides. The others (a gateway's 502/503/504, a 408) may leave it still running.
ANSWERED_CREATE_STATUSES = frozenset({409, 500})
#: HTTP statuses that reject a create before it happens: safe to create again.
REJECTED_CREATE_STATUSES = frozenset({429, 529})
#: The least time, past the request's own timeout, that a create which got no answer is
#: looked for before it is sent again. How late a server or gateway commits a create it is
#: still working on does not scale with a client timeout the user chose (a 1 s timeout does
#: not make the API commit within 1 s), so the settle time never drops below this unless the
#: connection or the hook sets it explicitly (``create_settle_seconds``).
CREATE_SETTLE_FLOOR_SECONDS = 120.0
#: HTTP statuses of a read (retrieve, list, results) worth trying again: rate limits,
#: overload and server or gateway errors. A read bills nothing, so trying again is safe.
RETRYABLE_READ_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
#: Bytes the create envelope ``{"requests":[...]}`` adds around the comma-joined requests.
CREATE_ENVELOPE_BYTES = len(b'{"requests":[]}')

# Documents and images (the Messages API's vision and PDF limits; a batch request takes the same).
#: Media types of ``image`` blocks.
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
#: Media types of ``document`` blocks (a PDF as base64, plain text as text).
DOCUMENT_MEDIA_TYPES = ("application/pdf", "text/plain")
#: Largest image, in bytes (decoded), and its largest side in pixels; a request with more than
#: ``MANY_IMAGES`` images allows ``MAX_IMAGE_SIDE_MANY`` pixels a side.
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_SIDE = 8000
MAX_IMAGE_SIDE_MANY = 2000
MANY_IMAGES = 20
#: Most images in one request.
MAX_IMAGES_PER_REQUEST = 100
#: Most PDF bytes (decoded) in one request, and most pages of one PDF.
MAX_PDF_BYTES_PER_REQUEST = 32 * 1024 * 1024
MAX_PDF_PAGES = 100
#: Files API: the beta flag every files call (and a batch that references a file) sends, and
#: the largest file it stores.
FILES_API_BETA = "files-api-2025-04-14"
MAX_UPLOAD_BYTES = 500 * 1024 * 1024


def validate_custom_id(custom_id: object, *, where: str = "") -> str:
    """Return ``custom_id`` if the API accepts it, else raise naming ``where`` (e.g. the row)."""
    location = f" ({where})" if where else ""
    if not isinstance(custom_id, str):
        raise ClaudeBatchInputError(
            f"custom_id{location} must be a string, got {type(custom_id).__name__} {custom_id!r}"
        )
    if not CUSTOM_ID_PATTERN.match(custom_id):
        raise ClaudeBatchInputError(
            f"custom_id{location} is {custom_id!r}: it must be 1-{CUSTOM_ID_MAX_LENGTH} characters of "
            "letters, digits, '_' or '-'"
        )
    return custom_id
