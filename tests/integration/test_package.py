"""The Debian package (README, Install: "Debian package"): built with CPack from the build
tree EDGELINK_BIN is in (already built: cpack builds nothing), checked with lintian, then
installed, upgraded, removed and purged with dpkg on this machine. The dpkg tests run
as root and skip otherwise; each one purges the package in a finalizer, even when it
fails, and checks that the files it could have touched are as they were before.
About 20 s on 2 cores.

lintian (Debian 12, 2.116) reports no errors. What it still reports, and why it stays:
  W no-manual-page: edgelink has no man page; `edgelink --help`, `edgelink <command>
    --help` and the README (in /usr/share/doc/edgelink) are its documentation.
  I hardening-no-bindnow, hardening-no-fortify-functions: the build uses CMake's flags,
    not dpkg-buildflags (-D_FORTIFY_SOURCE=2, -Wl,-z,now); a packaging-only change
    cannot add them.
  I binary-has-unneeded-section: CPack strips with plain `strip`, which keeps .comment.
  I spelling-error-in-binary: strings of RESTinio's headers (and a random 'IiF'), not edgelink's.
  I package-supports-alternative-init-but-no-init.d-script: edgelink needs systemd
    (Type=notify, watchdog, DynamicUser); there is no sysvinit script.
  I systemd-service-file-missing-documentation-key: the unit has no Documentation=.
test_lintian_has_no_errors fails on an error, or on a warning not in KNOWN_WARNINGS.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import EDGELINK_BIN

BUILD_DIR = os.path.dirname(os.path.abspath(EDGELINK_BIN))
SOURCE_DIR = os.environ.get("EDGELINK_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
KNOWN_WARNINGS = {"no-manual-page"}
UNIT = "/lib/systemd/system/edgelink.service"
CONF = "/etc/edgelink/edgelink.toml"
STATE = "/var/lib/edgelink"
SYSTEMD_RUNS = os.path.isdir("/run/systemd/system")
# Everything the package, its maintainer scripts or these tests may create or change.
WATCHED = ["/etc/edgelink", STATE, "/var/lib/private", "/usr/bin/edgelink", UNIT,
           "/usr/share/doc/edgelink", "/etc/systemd/system",
           "/var/lib/systemd/deb-systemd-helper-enabled", "/var/lib/systemd/deb-systemd-helper-masked"]

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("dpkg-deb") is None,
                                reason="dpkg is not installed (not a Debian system)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the dpkg tests install a .deb: run them as root")


def run(cmd, timeout=120, check=True, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited with {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def dpkg(*args, check=True):
    """dpkg, waiting (up to 2 min) while another apt/dpkg holds its lock."""
    deadline = time.monotonic() + 120
    while True:
        out = run(["dpkg", *args], check=False)
        if out.returncode != 0 and "lock" in out.stderr and time.monotonic() < deadline:
            time.sleep(1)
            continue
        if check and out.returncode != 0:
            raise AssertionError(f"dpkg {' '.join(args)} exited with {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out


def package_status():
    """dpkg's status of edgelink ('install ok installed', 'deinstall ok config-files'), None if unknown."""
    out = run(["dpkg-query", "-W", "-f=${Status}", "edgelink"], check=False)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def snapshot():
    """Every file, directory and link under WATCHED, with its link target and contents' size."""
    seen = {}
    for root in WATCHED:
        if not os.path.lexists(root):
            continue
        paths = [root]
        if os.path.isdir(root) and not os.path.islink(root):
            for d, dirs, files in os.walk(root):
                paths += [os.path.join(d, n) for n in dirs + files]
        for p in paths:
            if os.path.islink(p):
                seen[p] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                seen[p] = ("dir",)
            else:
                seen[p] = ("file", os.path.getsize(p))
    return seen


def project_version():
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
        return re.search(r"project\(edgelink VERSION (\S+)", f.read()).group(1)


def control_field(deb, field):
    return run(["dpkg-deb", "-f", deb, field]).stdout.strip()


@pytest.fixture(scope="module")
def deb():
    """The package, built by cpack from BUILD_DIR into a temporary directory."""
    if not os.path.exists(os.path.join(BUILD_DIR, "CPackConfig.cmake")):
        pytest.fail(f"{BUILD_DIR} has no CPackConfig.cmake: configure it again (cmake -S . -B {BUILD_DIR})")
    for tool in ("dpkg-shlibdeps", "dpkg-deb"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (dpkg-dev): CPack computes Depends with dpkg-shlibdeps")
    out_dir = tempfile.mkdtemp(prefix="edgelink-deb-")
    try:
        run(["cpack", "-G", "DEB", "-B", out_dir], cwd=BUILD_DIR, timeout=300)
        debs = [n for n in os.listdir(out_dir) if n.endswith(".deb")]
        assert len(debs) == 1, debs
        yield os.path.join(out_dir, debs[0])
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


@pytest.fixture
def machine():
    """Skips if edgelink is installed here in any way; afterwards purges the package and
    checks that everything under WATCHED is as it was."""
    if package_status() is not None:
        pytest.skip(f"the package edgelink is already known to dpkg ({package_status()}); these tests would replace it")
    for p in ("/etc/edgelink", STATE, "/var/lib/private/edgelink", "/usr/bin/edgelink", UNIT):
        if os.path.lexists(p):
            pytest.skip(f"{p} exists (an edgelink installed here, or its state, e.g. from demo/run.sh as "
                        "root): these tests would overwrite or purge it")
    before = snapshot()
    try:
        yield
    finally:
        if package_status() is not None:
            dpkg("--purge", "edgelink", check=False)
        # Directories the maintainer scripts (deb-systemd-helper) or a test created and left empty.
        for p in ("/var/lib/systemd/deb-systemd-helper-masked", "/var/lib/private"):
            if p not in before and os.path.isdir(p) and not os.listdir(p):
                os.rmdir(p)
        assert package_status() is None, f"edgelink is still known to dpkg: {package_status()}"
        after = snapshot()
        changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
        assert not changed, f"the test left the machine changed: {changed}"


def install(path):
    dpkg("-i", path)
    assert package_status() == "install ok installed"


def make_state():
    """State in /var/lib/edgelink, as the service leaves it. Where systemd runs, the started
    service has its StateDirectory made; elsewhere it is made here the way systemd lays it
    out for a DynamicUser (/var/lib/edgelink -> private/edgelink). Returns a file in it."""
    if SYSTEMD_RUNS:
        deadline = time.monotonic() + 20
        while not os.path.isdir(STATE) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert os.path.isdir(STATE), "the started service has no /var/lib/edgelink"
    else:
        os.makedirs("/var/lib/private", mode=0o700, exist_ok=True)
        os.makedirs("/var/lib/private/edgelink", mode=0o750)
        os.symlink("private/edgelink", STATE)
    marker = os.path.join(STATE, "package-test-state")
    with open(marker, "w") as f:
        f.write("unsent batches\n")
    return marker


def higher_version_of(deb, workdir):
    """The same package with a higher Version: unpacked, the control file edited, repacked."""
    tree = os.path.join(workdir, "tree")
    run(["dpkg-deb", "-R", deb, tree])
    control = os.path.join(tree, "DEBIAN", "control")
    with open(control) as f:
        text = f.read()
    old = re.search(r"^Version: (\S+)$", text, re.M).group(1)
    new = old + "+pkgtest1"
    run(["dpkg", "--compare-versions", new, "gt", old])
    with open(control, "w") as f:
        f.write(text.replace(f"Version: {old}\n", f"Version: {new}\n"))
    out = os.path.join(workdir, f"edgelink_{new}.deb")
    run(["dpkg-deb", "--root-owner-group", "-b", tree, out])
    return out, new


@needs_dpkg
def test_package_name_version_contents_and_dependencies(deb):
    """edgelink_<project version>_<arch>.deb, whose Depends come from dpkg-shlibdeps, with
    the binary, the unit pointing at /usr/bin/edgelink, the conffile and the docs."""
    version = project_version()
    assert run([EDGELINK_BIN, "version"]).stdout.split() == ["edgelink", version]
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    assert os.path.basename(deb) == f"edgelink_{version}_{arch}.deb"
    assert control_field(deb, "Package") == "edgelink"
    assert control_field(deb, "Version") == version
    assert control_field(deb, "Architecture") == arch
    depends = control_field(deb, "Depends")
    for lib in ("libc6 (>=", "libstdc++6", "libpaho-mqttpp3-1", "libpaho-mqtt1.3", "libtomlplusplus3",
                "liblz4-1", "libsystemd0", "libssl3"):
        assert lib in depends, f"{lib} missing from Depends: {depends}"

    listing = run(["dpkg-deb", "-c", deb]).stdout
    files = {line.split()[5].lstrip(".") for line in listing.splitlines()}
    for path in ("/usr/bin/edgelink", UNIT, CONF, "/usr/share/doc/edgelink/README.md",
                 "/usr/share/doc/edgelink/edgelink.toml.example", "/usr/share/doc/edgelink/copyright",
                 "/usr/share/doc/edgelink/changelog.gz"):
        assert path in files, f"{path} is not in the package:\n{listing}"
    assert not any(p.startswith("/usr/local") for p in files), listing

    unit = run(["sh", "-c", f"dpkg-deb --fsys-tarfile '{deb}' | tar -xOf - .{UNIT}"]).stdout
    assert "ExecStart=/usr/bin/edgelink run -c /etc/edgelink/edgelink.toml\n" in unit
    assert "@EDGELINK" not in unit
    with tempfile.TemporaryDirectory() as d:
        run(["dpkg-deb", "-e", deb, d])
        with open(os.path.join(d, "conffiles")) as f:
            assert f.read().split() == [CONF]
        for script in ("postinst", "prerm", "postrm"):
            assert os.access(os.path.join(d, script), os.X_OK), script


@pytest.mark.skipif(shutil.which("lintian") is None, reason="lintian is not installed")
@needs_dpkg
def test_lintian_has_no_errors(deb):
    """lintian: no errors, and no warnings but the ones listed (and explained) above."""
    out = run(["lintian", "--no-tag-display-limit", deb], check=False, timeout=300)
    tags = [line for line in out.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
    errors = [t for t in tags if t.startswith("E: ")]
    warnings = {t.split()[2] for t in tags if t.startswith("W: ")}
    assert not errors, out.stdout + out.stderr
    assert warnings <= KNOWN_WARNINGS, f"new lintian warnings {warnings - KNOWN_WARNINGS}:\n{out.stdout}"
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.usefixtures("machine")
@needs_root
@needs_dpkg
def test_install_then_check_passes(deb):
    """dpkg -i: the binary prints the project version, `check` accepts the installed config,
    the unit is enabled (and, where systemd runs, the service starts)."""
    install(deb)
    assert run(["/usr/bin/edgelink", "version"]).stdout.split() == ["edgelink", project_version()]
    out = run(["/usr/bin/edgelink", "check", "-c", CONF])
    assert "device_id" in out.stdout
    with open(UNIT) as f:
        assert "ExecStart=/usr/bin/edgelink run -c /etc/edgelink/edgelink.toml" in f.read()
    # postinst enables the unit (deb-systemd-helper does so without systemd running too).
    assert os.path.islink("/etc/systemd/system/multi-user.target.wants/edgelink.service")
    if SYSTEMD_RUNS:
        assert run(["systemctl", "is-enabled", "edgelink"], check=False).stdout.strip() == "enabled"
        deadline = time.monotonic() + 20
        while run(["systemctl", "is-active", "edgelink"], check=False).stdout.strip() != "active":
            assert time.monotonic() < deadline, run(["systemctl", "status", "edgelink"], check=False).stdout
            time.sleep(0.2)


@pytest.mark.usefixtures("machine")
@needs_root
@needs_dpkg
def test_upgrade_keeps_an_edited_config(deb):
    """An edited /etc/edgelink/edgelink.toml survives installing a higher version (a conffile:
    dpkg keeps the operator's copy without asking when the packaged one did not change)."""
    install(deb)
    with open(CONF) as f:
        text = f.read()
    edited = text.replace('device_id = "gw-001"', 'device_id = "gw-edited-by-test"')
    assert edited != text
    with open(CONF, "w") as f:
        f.write(edited)
    with tempfile.TemporaryDirectory() as work:
        newer, version = higher_version_of(deb, work)
        dpkg("-i", newer)
    assert run(["dpkg-query", "-W", "-f=${Version}", "edgelink"]).stdout == version
    with open(CONF) as f:
        assert f.read() == edited
    assert not os.path.exists(CONF + ".dpkg-dist") and not os.path.exists(CONF + ".dpkg-old")
    assert "gw-edited-by-test" in run(["/usr/bin/edgelink", "check", "-c", CONF]).stdout


@pytest.mark.usefixtures("machine")
@needs_root
@needs_dpkg
def test_remove_keeps_config_and_state_purge_deletes_them(deb):
    """dpkg -r takes the binary and the unit and keeps /etc/edgelink and /var/lib/edgelink
    (installing again finds them); dpkg --purge deletes both and the unit's enablement."""
    install(deb)
    with open(CONF, "a") as f:
        f.write("# edited\n")
    state = make_state()
    dpkg("-r", "edgelink")
    assert package_status() == "deinstall ok config-files"
    assert not os.path.exists("/usr/bin/edgelink") and not os.path.exists(UNIT)
    with open(CONF) as f:
        assert f.read().endswith("# edited\n")
    assert os.path.isfile(state), "remove took the state in /var/lib/edgelink"
    if SYSTEMD_RUNS:
        assert run(["systemctl", "is-active", "edgelink"], check=False).stdout.strip() != "active"

    install(deb)  # after a remove: the kept config is used, the unit is enabled again
    with open(CONF) as f:
        assert f.read().endswith("# edited\n")
    assert os.path.islink("/etc/systemd/system/multi-user.target.wants/edgelink.service")
    assert not os.path.lexists("/etc/systemd/system/edgelink.service"), "the unit is still masked"
    assert os.path.isfile(state)

    dpkg("--purge", "edgelink")
    assert package_status() is None
    for p in ("/etc/edgelink", STATE, "/var/lib/private/edgelink",
              "/etc/systemd/system/multi-user.target.wants/edgelink.service"):
        assert not os.path.lexists(p), f"{p} is still there after purge"


@pytest.mark.usefixtures("machine")
@needs_root
@needs_dpkg
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_installed_unit_verifies(deb):
    """systemd-analyze accepts the unit as installed (ExecStart=/usr/bin/edgelink exists)."""
    install(deb)
    out = run(["systemd-analyze", "verify", UNIT], check=False, timeout=60)
    problems = [l for l in (out.stdout + out.stderr).splitlines() if "edgelink.service" in l]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_cmake_install_unit_points_at_its_prefix():
    """`cmake --install` (no root, into a DESTDIR) generates the same unit for /usr/local:
    ExecStart=/usr/local/bin/edgelink in /usr/local/lib/systemd/system."""
    with tempfile.TemporaryDirectory(prefix="edgelink-destdir-") as dest:
        run(["cmake", "--install", BUILD_DIR, "--prefix", "/usr/local"], env=dict(os.environ, DESTDIR=dest))
        with open(os.path.join(dest, "usr/local/lib/systemd/system/edgelink.service")) as f:
            text = f.read()
        assert "ExecStart=/usr/local/bin/edgelink run -c /etc/edgelink/edgelink.toml\n" in text and "@EDGELINK" not in text
        assert os.access(os.path.join(dest, "usr/local/bin/edgelink"), os.X_OK)
        assert os.path.isfile(os.path.join(dest, "etc/edgelink/edgelink.toml"))
        assert os.path.isfile(os.path.join(dest, "usr/local/share/doc/edgelink/edgelink.toml.example"))
