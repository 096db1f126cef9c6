"""`mailer preview`: serve the built issue on 127.0.0.1 and rebuild it when a file changes.

Stdlib only. The issue folder, the layouts and the config file are polled (mtime and size);
a change rebuilds the issue, and the open page reloads itself. A failed rebuild shows the
error in the page until the next change fixes it.

    /            the email as the sample subscriber gets it
    /index.txt   its plain-text twin
    /web         the web version (no subscriber data)
    /media/NAME  the issue folder's images as published (the pages point here, not at
                 BASE_URL/media/, which has them only once a send has stored them)
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mailer.compose.build import build
from mailer.compose.images import MEDIA_PREFIX, PublishedImage
from mailer.compose.model import Newsletter
from mailer.errors import MailerError

POLL_SECONDS = 0.5

_RELOAD = """<script>
(function () {{
  var seen = "{version}";
  setInterval(function () {{
    fetch("/_version", {{cache: "no-store"}}).then(function (r) {{ return r.text(); }})
      .then(function (v) {{ if (v !== seen) location.reload(); }}, function () {{}});
  }}, 1000);
}})();
</script>"""


def _signature(paths: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    files: list[tuple[str, int, int]] = []
    for root in paths:
        try:
            candidates = (
                [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
            )
        except OSError:  # e.g. a folder that cannot be read: the build says so, in the page
            candidates = []
        for path in candidates:
            try:
                stat = path.stat()
            except OSError:
                continue
            if path.is_file():
                files.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(files)


class Preview:
    """The latest build of one issue, rebuilt when a watched file changes."""

    def __init__(
        self,
        issue_dir: Path,
        load_newsletter: Callable[[], Newsletter],
        extra: Iterable[Path] = (),
        notify: Callable[[Preview], None] | None = None,
    ) -> None:
        self.issue_dir = issue_dir
        self.notify = notify
        self.load_newsletter = load_newsletter  # re-read on every rebuild: the config may change
        self.extra = tuple(extra)
        self.lock = threading.Lock()
        self.version = 0
        self.html = self.text = self.web = ""
        self.media: dict[str, PublishedImage] = {}
        self.error = ""
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._watch: tuple[Path, ...] = (issue_dir, *self.extra)

    def refresh(self) -> bool:
        """Rebuild if any watched file changed since the last build. True if rebuilt."""
        with self.lock:
            signature = _signature(self._watch)
            if signature == self._seen:
                return False
            self._seen = signature
            try:
                newsletter = self.load_newsletter()
                self._watch = (self.issue_dir, newsletter.layouts_dir, *self.extra)
                # Taken before building: a change made during the build triggers another.
                self._seen = _signature(self._watch)
                built = build(self.issue_dir, newsletter)
            except MailerError as exc:
                self.error = str(exc)
            else:
                self.error = ""
                # The pages load the images from this server (see the module doc).
                local = _LocalMedia(f"{newsletter.base_url}/{MEDIA_PREFIX}")
                self.html, self.web = local(built.html), local(built.composed.web_html)
                self.text = built.text
                self.media = {image.name: image for image in built.composed.media}
            self.version += 1
        if self.notify:
            self.notify(self)
        return True

    def page(self, path: str) -> tuple[int, str, str | bytes]:
        """(status, content type, body) for a request path."""
        self.refresh()
        with self.lock:
            image = self.media.get(path.removeprefix(f"/{MEDIA_PREFIX}"))
            if path.startswith(f"/{MEDIA_PREFIX}") and image is not None:
                return 200, image.content_type, image.data
            if path == "/_version":
                return 200, "text/plain; charset=utf-8", str(self.version)
            if self.error:
                return 500, "text/html; charset=utf-8", self._error_page()
            if path in ("/", "/index.html"):
                return 200, "text/html; charset=utf-8", self._live(self.html)
            if path == "/web":
                return 200, "text/html; charset=utf-8", self._live(self.web)
            if path == "/index.txt":
                return 200, "text/plain; charset=utf-8", self.text
        return (
            404,
            "text/plain; charset=utf-8",
            "not found: try /, /index.txt, /web or /media/NAME\n",
        )

    def _live(self, page: str) -> str:
        script = _RELOAD.format(version=self.version)
        head, sep, tail = page.rpartition("</body>")
        return head + script + sep + tail if sep else page + script

    def _error_page(self) -> str:
        return self._live(
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            "<title>Build failed</title></head>"
            '<body style="font:16px/1.5 sans-serif;margin:40px">'
            "<h1>The issue does not build</h1>"
            f'<pre id="error" style="white-space:pre-wrap;color:#8a1c1c">'
            f"{html.escape(self.error)}</pre>"
            "<p>Fix the file; this page reloads when it builds again.</p></body></html>"
        )


class _LocalMedia:
    """Points ``src="BASE_URL/media/NAME"`` at ``/media/NAME`` of the preview server."""

    def __init__(self, published_at: str) -> None:
        self.attribute = f'src="{html.escape(published_at)}'

    def __call__(self, page: str) -> str:
        return page.replace(self.attribute, f'src="/{MEDIA_PREFIX}')


class PreviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, preview: Preview, host: str = "127.0.0.1", port: int = 0) -> None:
        self.preview = preview
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise MailerError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (--port 0 picks a free one)"
            ) from None
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.preview.refresh()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._watcher.start()
        try:
            super().serve_forever(poll_interval)
        finally:
            self._stop.set()


class _Handler(BaseHTTPRequestHandler):
    server: PreviewServer

    def do_GET(self) -> None:
        status, kind, body = self.server.preview.page(self.path.split("?", 1)[0])
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the terminal shows rebuilds, not every poll of /_version
