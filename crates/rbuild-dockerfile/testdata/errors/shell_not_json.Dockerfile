FROM a
SHELL /bin/bash -c
