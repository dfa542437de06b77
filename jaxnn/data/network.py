"""A cheap "is there a network?" probe, run before any download.

Machines without internet (clusters, this CI) would otherwise hang in a download for minutes
before failing. The probe opens one TCP connection to the host tensorflow-datasets downloads
from, in a daemon thread joined with a deadline, so a slow DNS resolver cannot stall it either.
"""

import os
import socket
import threading

# tfds fetches MNIST-family archives and its own metadata from Google Cloud Storage.
PROBE_HOST = "storage.googleapis.com"
PROBE_PORT = 443


def network_available(timeout_s: float = 1.0,
                      host: str = PROBE_HOST,
                      port: int = PROBE_PORT) -> bool:
  """Whether `host:port` accepts a TCP connection within `timeout_s` seconds.

  Args:
    timeout_s: the whole budget, DNS resolution included.
    host: host to reach.
    port: port to reach.

  Returns:
    False at once when the environment variable JAXNN_OFFLINE is set to a true value, else
    whether the connection opened in time.
  """
  if os.environ.get("JAXNN_OFFLINE", "").lower() in ("1", "true", "yes"):
    return False
  outcome = []

  def probe():
    try:
      with socket.create_connection((host, port), timeout=timeout_s):
        outcome.append(True)
    except OSError:
      outcome.append(False)

  thread = threading.Thread(target=probe, daemon=True, name="jaxnn-network-probe")
  thread.start()
  thread.join(timeout_s)
  return bool(outcome) and outcome[0]
