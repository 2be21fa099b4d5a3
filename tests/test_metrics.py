"""PT_METRICS_FILE after real passes: parsed with prometheus_client's own parser, served by a real
node_exporter (Debian's prometheus-node-exporter) when it is installed, refused where a customer
could reach it."""

import os
import shutil
import stat
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers.procs import wait_until
from helpers.service import bindshell_fixture, free_port, recorded_service
from helpers.uids import uid_for

from ptfast.scan import procfs
from ptfast.channels import status

# aged: the processes a test starts count as older than PT_LIMIT=1 (no sleeping past it)
pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("aged")]

UID = uid_for(820)


bindshell = bindshell_fixture(UID)


@pytest.fixture
def service(tmp_path):
    service = recorded_service(tmp_path, UID)
    service.metrics_dir = os.path.join(service.root, "textfile")
    os.makedirs(service.metrics_dir)
    service.metrics_file = os.path.join(service.metrics_dir, "ptfast.prom")
    return service


def samples(text: str) -> dict:
    """(name, sorted labels) -> value, every sample of the exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_file_carries_the_pass(service, bindshell):
    result = service.run_once(service.sendmail, f"PT_METRICS_FILE={service.metrics_file}")
    assert result.returncode == 0, result.stderr.decode()
    info = os.stat(service.metrics_file)
    assert stat.S_IMODE(info.st_mode) == 0o644 and info.st_uid == 0
    with open(service.metrics_file) as handle:
        found = samples(handle.read())
    document = status.read_status(service.state_dir)
    last = document["last_pass"]
    version = document["version"]
    assert found[("ptfast_info", (("core", procfs.CORE_NAME), ("version", version)))] == 1
    assert found[("ptfast_last_pass_timestamp_seconds", ())] == pytest.approx(last["ended_at"])
    assert found[("ptfast_last_pass_duration_seconds", ())] == pytest.approx(
        last["duration_seconds"])
    assert found[("ptfast_last_pass_processes", ())] == last["processes"]
    assert found[("ptfast_last_pass_processes_inspected", ())] == last["inspected"] >= 1
    assert found[("ptfast_last_pass_findings", (("check", "suspicious"),))] == 1
    assert found[("ptfast_last_pass_findings", (("check", "forkbomb"),))] == 0
    assert found[("ptfast_findings_total", (("check", "suspicious"),))] == 1
    assert found[("ptfast_passes_total", ())] == 1
    assert found[("ptfast_alerts_spooled_total", (("channel", "mail"),))] == 1
    assert found[("ptfast_alerts_delivered_total", (("channel", "mail"),))] == 1
    assert found[("ptfast_alert_delivery_failures_total", (("channel", "webhook"),))] == 0
    assert found[("ptfast_spool_entries", ())] == 0
    assert found[("ptfast_spool_oldest_entry_timestamp_seconds", ())] == 0
    assert found[("ptfast_interval_seconds", ())] == 60
    assert found[("ptfast_tracking_enabled", ())] == 1
    assert found[("ptfast_ignore_rules_switched_off", ())] == 0
    assert not [name for name in os.listdir(service.metrics_dir) if name != "ptfast.prom"]


def test_metrics_show_a_spool_that_does_not_drain(service, bindshell):
    relay = f"LF_ALERT_SMTP=127.0.0.1:{free_port()}"        # down
    for _ in range(2):
        service.run_once(relay, f"PT_METRICS_FILE={service.metrics_file}")
    with open(service.metrics_file) as handle:
        found = samples(handle.read())
    oldest = found[("ptfast_spool_oldest_entry_timestamp_seconds", ())]
    assert found[("ptfast_spool_entries", ())] == 1
    assert 0 < oldest <= found[("ptfast_last_pass_timestamp_seconds", ())]
    # one alert, failed in two passes: it counts once (alerts, not attempts: issue 22)
    assert found[("ptfast_alert_delivery_failures_total", (("channel", "mail"),))] == 1
    assert found[("ptfast_alerts_delivered_total", (("channel", "mail"),))] == 0
    assert found[("ptfast_passes_total", ())] == 2


def test_a_metrics_directory_others_can_write_is_refused(service, bindshell):
    os.chmod(service.metrics_dir, 0o777)          # any user could swap the file
    result = service.run_once(service.sendmail, f"PT_METRICS_FILE={service.metrics_file}")
    assert result.returncode == 0, result.stderr.decode()       # tracking went on
    assert not os.path.exists(service.metrics_file)
    refused = [line for line in service.log().splitlines()
               if f"cannot write {service.metrics_file}" in line]
    assert len(refused) == 1 and "writable by every user" in refused[0]


def test_a_real_node_exporter_serves_the_metrics(service, bindshell):
    exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if exporter is None:
        pytest.skip("prometheus-node-exporter is not installed (apt-get install "
                    "prometheus-node-exporter)")
    result = service.run_once(service.sendmail, f"PT_METRICS_FILE={service.metrics_file}")
    assert result.returncode == 0, result.stderr.decode()
    port = free_port()
    node = subprocess.Popen([exporter, "--collector.disable-defaults", "--collector.textfile",
                             f"--collector.textfile.directory={service.metrics_dir}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def scrape():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None
        assert wait_until(lambda: scrape() is not None, 30), node.stderr
        found = samples(scrape())
    finally:
        node.terminate()
        node.wait(10)
    assert found[("node_textfile_scrape_error", ())] == 0
    assert found[("ptfast_last_pass_findings", (("check", "suspicious"),))] == 1
    assert found[("ptfast_alerts_delivered_total", (("channel", "mail"),))] == 1
    assert found[("ptfast_info", (("core", procfs.CORE_NAME), ("version",
                                  status.read_status(service.state_dir)["version"])))] == 1
