/* The escape suite's probe: a small static program that a hostile RUN step runs to attack
 * the sandbox (crates/rbuild-sandbox/tests/escape.rs). Each command prints one line per
 * attempt, "<attempt>: ok" or "<attempt>: <strerror>", and never decides anything: the test
 * asserts on the host side that nothing happened.
 *
 *   probe write PATH VALUE       write VALUE to PATH (sysctls, cgroup files)
 *   probe mkdir PATH             create a directory (a cgroup)
 *   probe read PATH              print PATH's first line
 *   probe ids                    print the real and effective uid
 *   probe connect IP PORT        open a TCP connection
 *   probe connect-abstract NAME  connect to the abstract Unix socket @NAME
 *   probe tiocsti TEXT           type TEXT into /dev/tty and into fds 0-2 with TIOCSTI
 *   probe keys NAME              request_key / search @s and @u for the user key NAME
 *   probe chroot-escape PATH     chroot("/esc"), chdir("..") x100, chroot("."), read PATH
 *   probe addkey NAME VALUE CMD… (on the host) add NAME to the session and user keyrings,
 *                                then exec CMD (so the sandbox's builder holds the key)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#define KEY_SPEC_USER_KEYRING -4
#define KEY_SPEC_SESSION_KEYRING -3
#define KEYCTL_SEARCH 10
#define KEYCTL_READ 11

static int report(const char *what, int rc) {
    if (rc < 0)
        printf("%s: %s\n", what, strerror(errno));
    else
        printf("%s: ok\n", what);
    fflush(stdout);
    return rc;
}

static void print_first_line(const char *what, const char *path) {
    char buf[256];
    int fd = open(path, O_RDONLY);
    if (report(what, fd) < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) {
        report("read", -1);
        return;
    }
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    printf("content: %s\n", buf);
    fflush(stdout);
}

static void read_key(const char *what, long id) {
    char buf[256];
    if (id < 0) {
        report(what, -1);
        return;
    }
    long n = syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf - 1);
    if (n < 0) {
        report(what, -1);
        return;
    }
    buf[n < (long)sizeof buf - 1 ? n : (long)sizeof buf - 1] = 0;
    printf("%s: ok key=%s\n", what, buf);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe COMMAND ARGS\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "write") && argc == 4) {
        int fd = open(argv[2], O_WRONLY);
        if (report("open", fd) >= 0)
            report("write", (int)write(fd, argv[3], strlen(argv[3])));
    } else if (!strcmp(cmd, "mkdir") && argc == 3) {
        report("mkdir", mkdir(argv[2], 0755));
    } else if (!strcmp(cmd, "connect") && argc == 4) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
        inet_pton(AF_INET, argv[2], &a.sin_addr);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        report("connect", connect(s, (struct sockaddr *)&a, sizeof a));
    } else if (!strcmp(cmd, "connect-abstract") && argc == 3) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        size_t n = strlen(argv[2]);
        if (n > sizeof a.sun_path - 1)
            n = sizeof a.sun_path - 1;
        memcpy(a.sun_path + 1, argv[2], n);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        report("connect-abstract",
               connect(s, (struct sockaddr *)&a, (socklen_t)(sizeof(sa_family_t) + 1 + n)));
    } else if (!strcmp(cmd, "ids") && argc == 2) {
        printf("uid=%d euid=%d\n", (int)getuid(), (int)geteuid());
    } else if (!strcmp(cmd, "read") && argc == 3) {
        print_first_line("open", argv[2]);
    } else if (!strcmp(cmd, "tiocsti") && argc == 3) {
        int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
        report("open /dev/tty", tty);
        int fds[] = {tty, 0, 1, 2};
        const char *names[] = {"tiocsti /dev/tty", "tiocsti fd0", "tiocsti fd1", "tiocsti fd2"};
        for (int i = 0; i < 4; i++) {
            if (fds[i] < 0)
                continue;
            int rc = 0;
            for (const char *c = argv[2]; *c && rc == 0; c++)
                rc = ioctl(fds[i], TIOCSTI, c);
            report(names[i], rc);
        }
    } else if (!strcmp(cmd, "keys") && argc == 3) {
        read_key("request_key", syscall(SYS_request_key, "user", argv[2], NULL, 0));
        read_key("search @s",
                 syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", argv[2], 0));
        read_key("search @u",
                 syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user", argv[2], 0));
    } else if (!strcmp(cmd, "chroot-escape") && argc == 3) {
        mkdir("/esc", 0755);
        if (report("chroot /esc", chroot("/esc")) >= 0) {
            for (int i = 0; i < 100; i++)
                chdir("..");
            report("chroot .", chroot("."));
        }
        print_first_line("open", argv[2]);
    } else if (!strcmp(cmd, "addkey") && argc >= 5) {
        long s = syscall(SYS_add_key, "user", argv[2], argv[3], strlen(argv[3]),
                         KEY_SPEC_SESSION_KEYRING);
        long u = syscall(SYS_add_key, "user", argv[2], argv[3], strlen(argv[3]),
                         KEY_SPEC_USER_KEYRING);
        if (s < 0 || u < 0) {
            perror("add_key");
            return 3;
        }
        execv(argv[4], argv + 4);
        perror("exec");
        return 127;
    } else {
        fprintf(stderr, "probe: bad command\n");
        return 2;
    }
    return 0;
}
