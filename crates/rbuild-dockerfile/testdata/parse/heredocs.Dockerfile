FROM alpine:3.20
# One heredoc is the whole script.
RUN <<EOF
set -e
echo "hello $HOME"
EOF
# A heredoc fed to a command, with <<- stripping leading tabs.
RUN <<-SCRIPT python3
	print("indented")
	SCRIPT
# Two heredocs on one line, the second with a quoted delimiter.
RUN <<A cat - <<"B" > /out
first $X
A
second $X
B
# Heredocs as COPY sources; the destination may not be one.
COPY <<config.ini <<'raw.txt' /etc/app/
[main]
home=$HOME
config.ini
literal $HOME
raw.txt
ADD --chmod=0600 <<-EOF /secret
	token
	EOF
# A heredoc in ONBUILD.
ONBUILD RUN <<EOF
echo later
EOF
# JSON form never has heredocs.
RUN ["echo", "<<EOF"]
