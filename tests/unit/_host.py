"""What the host running the unit tests can do."""
import socket


def genl_socket_refused() -> bool:
    """True where this interpreter cannot open a generic netlink socket at
    all: user-mode emulators such as qemu-aarch64-static, which run the
    aarch64 wheel's unit tests. No kernel answer can be tested there."""
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16).close()  # NETLINK_GENERIC
        return False
    except OSError:
        return True
