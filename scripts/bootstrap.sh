# Sourced by the other scripts: makes sure Swift is on PATH and the C
# libraries Paystorm links (GSL, SQLite) and pkg-config are installed.
# Installs only what is missing, through apt-get, as root or with sudo.

if ! command -v swift >/dev/null 2>&1; then
    if [ -x /opt/swift/usr/bin/swift ]; then
        export PATH="/opt/swift/usr/bin:$PATH"
    else
        echo "error: no Swift toolchain: install Swift 6.1 or later, or put it at /opt/swift" >&2
        exit 69
    fi
fi

paystorm_missing=()
for paystorm_pkg in libgsl-dev libsqlite3-dev pkg-config; do
    dpkg -s "$paystorm_pkg" >/dev/null 2>&1 || paystorm_missing+=("$paystorm_pkg")
done
if [ "${#paystorm_missing[@]}" -gt 0 ]; then
    echo "installing ${paystorm_missing[*]} ..."
    paystorm_sudo=""
    [ "$(id -u)" -ne 0 ] && paystorm_sudo="sudo"
    $paystorm_sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $paystorm_sudo apt-get install -y -qq --no-install-recommends "${paystorm_missing[@]}"
fi
unset paystorm_missing paystorm_pkg paystorm_sudo
