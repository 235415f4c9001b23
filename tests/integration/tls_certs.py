"""A throw-away PKI for the TLS tests, made with the openssl command line (EC P-256 keys,
valid for two days): a CA and a server certificate for localhost / 127.0.0.1 signed by it,
a server certificate for another host name and a client certificate signed by the same CA,
and an unrelated CA."""
import os
import subprocess


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=edgelink test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=d)
    return os.path.join(d, f"{name}.pem")


def _make_leaf(d, name, ca, san, usage="serverAuth"):
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                f"keyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


def make_pki(d):
    """Writes the PKI into directory `d`; returns a dict of file paths."""
    os.makedirs(d, exist_ok=True)
    ca = _make_ca(d, "ca")
    other_ca = _make_ca(d, "other-ca")
    server_cert, server_key = _make_leaf(d, "server", "ca", "DNS:localhost,IP:127.0.0.1")
    wrong_cert, wrong_key = _make_leaf(d, "wrong-host", "ca", "DNS:elsewhere.example")
    client_cert, client_key = _make_leaf(d, "client", "ca", "DNS:gw-001", usage="clientAuth")
    return {"ca": ca, "other_ca": other_ca, "server_cert": server_cert, "server_key": server_key,
            "wrong_host_cert": wrong_cert, "wrong_host_key": wrong_key,
            "client_cert": client_cert, "client_key": client_key}
