"""Download pages concurrently from a local web server, handling each as it completes.

    python examples/download.py
    treadle run examples/download.py

A small HTTP server runs in a thread on 127.0.0.1 (nothing leaves this machine); a thread pool
fetches 20 pages and `as_completed` hands back each response as soon as it arrives.
"""

import concurrent.futures
import http.server
import threading
import urllib.request


class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        number = int(self.path.strip("/"))
        body = (f"page {number}\n" * (number + 1)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the output quiet
        pass


def fetch(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


def main() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    sizes = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        futures = {pool.submit(fetch, f"{base}/{n}"): n for n in range(20)}
        for future in concurrent.futures.as_completed(futures):
            sizes[futures[future]] = future.result()
    server.shutdown()
    print(f"fetched {len(sizes)} pages, {sum(sizes.values()):,} bytes in all")
    print("sizes:", [sizes[n] for n in range(20)])


if __name__ == "__main__":
    main()
