/* qscan-queue: the program qmail runs as QMAILQUEUE (the native client).
 *
 * It moves bytes and exit codes, nothing more: it reads the message (fd 0) and the envelope
 * (fd 1) from qmail, checks the envelope's form, sends both with the qmail environment to the
 * scan daemon (QSCAN/1 over a unix socket, docs/protocol.md) and exits with its answer. When
 * the answer is "queue this" (an X frame with the final message in a memfd), it runs the real
 * qmail-queue itself - message on fd 0, envelope on fd 1, a pipe on fd 6 - exits with its exit
 * code and reports that code to the daemon (an S frame). All judgement is the daemon's.
 *
 * The reference implementation is ingest/queue_client.py (installed as qscan-queue-py); both
 * give the same exit codes, fd 6 texts and stderr lines in every case (tests/test_clients.py).
 * libc only. Environment: QSCAN_SOCKET, QSCAN_TIMEOUT, QSCAN_QMAIL_QUEUE (see the Python one).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* qmail-queue's exit codes (ingest/exitcodes.py) */
enum { QUEUED = 0, ADDRESS_TOO_LONG = 11, PERM_REJECT = 31, TIMEOUT = 52, READ_ERROR = 54,
       TEMP_REJECT = 71, INTERNAL_BUG = 81, CUSTOM_ERROR = 82, ENVELOPE_FORMAT = 91 };

#define FD6 6
#define MAX_CHUNK (1u << 20)          /* message frame, envelope */
#define MAX_CONTROL (64u * 1024)      /* any other frame */
#define MAX_ADDRESS 1000
#define MAX_VALUE 1024
#define MAX_TEXT 1000                 /* bytes written to fd 6 */
#define DEFAULT_TIMEOUT 1200.0
#define MAX_TIMEOUT 1e7
#define MAX_HANDOFF_MS 10000000000ULL
#define MAX_FDS 4                     /* descriptors taken from one read; more are dropped */
#define REPORT_WAIT 5.0               /* seconds for the report, and for the daemon to record a failure */

static const char DEFAULT_SOCKET[] = "/run/qscan/qscan.sock";
static const char DEFAULT_QMAIL_QUEUE[] = "/var/qmail/bin/qmail-queue";
static const char TEMP_TEXT[] = "Zqscan: scanner temporarily unavailable, try again later (#4.3.0)";
static const char ENVELOPE_TEXT[] = "Dqscan: envelope too large (#5.5.3)";
static const char FORMAT_TEXT[] = "Dqscan: envelope format error (#5.5.4)";
static const char *const PASSED_ENV[] = {
    "TCPREMOTEIP", "TCPREMOTEHOST", "TCPREMOTEINFO", "TCPREMOTEPORT", "TCPLOCALIP",
    "TCPLOCALHOST", "TCPLOCALPORT", "RELAYCLIENT", "SMTPAUTHUSER", "SMTP_AUTH_USER",
    "AUTH_USER", "SMTPAUTHMETHOD", "TLS_PROTOCOL", "HELO", "SMTPHELO",
};

struct buf { unsigned char *p; size_t len, cap; };
/* an answer: exit code and an optional fd 6 text */
struct result { int code; const unsigned char *text; size_t text_len; };

static unsigned char text_store[4096 + 65536];

static void say(const char *fmt, ...) {
    char line[2048];
    int n = snprintf(line, sizeof line, "qscan-queue: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(2, line, len);
    (void)w;
}

static _Noreturn void die_oom(void) {
    say("internal error: out of memory");
    _exit(INTERNAL_BUG);
}

static void buf_reserve(struct buf *b, size_t more) {
    if (b->cap - b->len >= more) return;
    if (more > SIZE_MAX / 2 - b->len) die_oom();
    size_t cap = b->cap ? b->cap : 65536;
    while (cap - b->len < more) cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) die_oom();
    b->p = p;
    b->cap = cap;
}

static void buf_add(struct buf *b, const void *data, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void frame_head(unsigned char h[5], char kind, size_t n) {
    h[0] = (unsigned char)kind;
    h[1] = (unsigned char)(n >> 24); h[2] = (unsigned char)(n >> 16);
    h[3] = (unsigned char)(n >> 8); h[4] = (unsigned char)n;
}

static void buf_frame(struct buf *b, char kind, const void *p, size_t n) {
    unsigned char h[5];
    frame_head(h, kind, n);
    buf_add(b, h, 5);
    buf_add(b, p, n);
}

/* fd to EOF; -1 on a read error */
static int read_all(int fd, struct buf *b) {
    for (;;) {
        buf_reserve(b, 256 * 1024);
        ssize_t n = read(fd, b->p + b->len, b->cap - b->len);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        b->len += (size_t)n;
    }
}

/* The envelope's form, as ingest/envelope.py judges it: 0, or the exit code (and *why for 82). */
static int check_envelope(const unsigned char *d, size_t n, const char **why) {
    if (n == 0) return ENVELOPE_FORMAT;
    if (d[0] != 'F') { *why = "envelope does not start with F"; return CUSTOM_ERROR; }
    const unsigned char *end = memchr(d, 0, n);
    if (!end) return ENVELOPE_FORMAT;
    if ((size_t)(end - d) - 1 > MAX_ADDRESS) return ADDRESS_TOO_LONG;
    size_t pos = (size_t)(end - d) + 1, count = 0;
    for (;;) {
        if (pos >= n) return ENVELOPE_FORMAT;
        if (d[pos] == 0) {
            if (pos + 1 != n) { *why = "bytes after the final NUL"; return CUSTOM_ERROR; }
            break;
        }
        if (d[pos] != 'T') { *why = "recipient does not start with T"; return CUSTOM_ERROR; }
        end = memchr(d + pos, 0, n - pos);
        if (!end) return ENVELOPE_FORMAT;
        size_t len = (size_t)(end - d) - pos - 1;
        if (len == 0) { *why = "empty recipient"; return CUSTOM_ERROR; }
        if (len > MAX_ADDRESS) return ADDRESS_TOO_LONG;
        count++;
        pos = (size_t)(end - d) + 1;
    }
    if (count == 0) { *why = "no recipients"; return CUSTOM_ERROR; }
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int ms_left(double deadline) {
    double left = (deadline - now()) * 1000.0;
    if (left <= 0) return 0;
    return left > INT_MAX ? INT_MAX : (int)left + 1;
}

/* "Strerror (errno N)" of errno e */
static const char *why(int e) {
    static char s[256];
    snprintf(s, sizeof s, "%s (errno %d)", strerror(e), e);
    return s;
}

/* Everything in iov down the socket by the deadline: 0, -1 with errno (ETIMEDOUT: timed out). */
static int send_iov(int sock, struct iovec *iov, size_t cnt, double deadline) {
    while (cnt) {
        struct msghdr mh = {0};
        mh.msg_iov = iov;
        mh.msg_iovlen = cnt > IOV_MAX ? IOV_MAX : cnt;
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) return -1;
            struct pollfd p = {sock, POLLOUT, 0};
            int ms = ms_left(deadline);
            if (ms == 0 || poll(&p, 1, ms) == 0) { errno = ETIMEDOUT; return -1; }
            continue;
        }
        size_t done = (size_t)n;
        while (cnt && done >= iov->iov_len) { done -= iov->iov_len; iov++; cnt--; }
        if (cnt) { iov->iov_base = (char *)iov->iov_base + done; iov->iov_len -= done; }
    }
    return 0;
}

/* The daemon's answer as it arrives: bytes, and the descriptors that came with them. */
struct answer { unsigned char buf[5 + MAX_CONTROL + 65536]; size_t len; int fds[MAX_FDS * 4]; int nfds; };

static ssize_t recv_answer(int sock, struct answer *a) {
    union { char c[CMSG_SPACE(MAX_FDS * sizeof(int))]; struct cmsghdr align; } ctl;
    struct iovec iov = {a->buf + a->len, sizeof a->buf - a->len};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.c;
    mh.msg_controllen = sizeof ctl.c;
    ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (a->nfds < (int)(sizeof a->fds / sizeof a->fds[0])) a->fds[a->nfds++] = fd;
            else close(fd);
        }
    }
    a->len += (size_t)n;
    return n;
}

static void close_fds(struct answer *a) {
    for (int i = 0; i < a->nfds; i++) close(a->fds[i]);
    a->nfds = 0;
}

/* An R body: 1-3 ASCII digits, 0..255, then optionally "\n" and a text. */
static int decode_result(const unsigned char *p, size_t n, struct result *r) {
    size_t i = 0;
    int code = 0;
    while (i < n && p[i] != '\n') {
        if (i >= 3 || p[i] < '0' || p[i] > '9') return -1;
        code = code * 10 + (p[i] - '0');
        i++;
    }
    if (i == 0 || code > 255) return -1;
    /* the codes an R frame may carry (docs/protocol.md); any other is garbage, hence temporary */
    if (code != QUEUED && code != ADDRESS_TOO_LONG && code != PERM_REJECT && code != TEMP_REJECT
            && code != INTERNAL_BUG && code != CUSTOM_ERROR && code != ENVELOPE_FORMAT)
        return -1;
    r->code = code;
    r->text = i < n ? p + i + 1 : NULL;
    r->text_len = i < n ? n - i - 1 : 0;
    return 0;
}

static int digits(const unsigned char *p, size_t n, size_t most, unsigned long long *out) {
    if (n == 0 || n > most) return -1;
    unsigned long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (unsigned long long)(p[i] - '0');
    }
    *out = v;
    return 0;
}

static pid_t wait_pid(pid_t pid, double timeout, int *status) {
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd >= 0) {
        struct pollfd p = {pidfd, POLLIN, 0};
        double deadline = now() + timeout;
        int r;
        do {
            r = poll(&p, 1, ms_left(deadline));
        } while (r < 0 && errno == EINTR);
        close(pidfd);
        if (r <= 0) return 0;
        return waitpid(pid, status, 0);
    }
    double deadline = now() + timeout;
    for (;;) {
        pid_t got = waitpid(pid, status, WNOHANG);
        if (got != 0) return got;
        if (now() >= deadline) return 0;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
}

/* After an X frame: run qmail-queue on the daemon's message and our envelope, report, answer. */
static int hand_off(int sock, struct answer *a, const unsigned char *payload, size_t plen,
                    const struct buf *env, struct result *res) {
    if (a->nfds != 1) {
        say("talking to the daemon failed: hand-off with %d descriptors from the daemon", a->nfds);
        return -1;
    }
    const unsigned char *sp = memchr(payload, ' ', plen);
    unsigned long long size, ms;
    if (!sp || digits(payload, (size_t)(sp - payload), 19, &size) < 0
            || digits(sp + 1, plen - (size_t)(sp - payload) - 1, 11, &ms) < 0 || ms < 1 || ms > MAX_HANDOFF_MS) {
        say("talking to the daemon failed: bad hand-off from the daemon");
        return -1;
    }
    int msg_fd = a->fds[0];
    struct stat st;
    if (fstat(msg_fd, &st) < 0) { say("talking to the daemon failed: %s", why(errno)); return -1; }
    if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size != size) {
        say("talking to the daemon failed: the hand-off's message is not a regular file of %llu bytes", size);
        return -1;
    }
    if (lseek(msg_fd, 0, SEEK_SET) < 0) { say("talking to the daemon failed: %s", why(errno)); return -1; }
    const char *program = getenv("QSCAN_QMAIL_QUEUE");
    if (!program || !*program) program = DEFAULT_QMAIL_QUEUE;
    double timeout = (double)ms / 1000.0;
    int env_fd = memfd_create("qscan-envelope", MFD_CLOEXEC), errp[2] = {-1, -1};
    if (env_fd < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        say("talking to the daemon failed: %s", why(errno));
        if (env_fd >= 0) close(env_fd);
        return -1;
    }
    for (size_t off = 0; off < env->len;) {
        ssize_t n = write(env_fd, env->p + off, env->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            say("talking to the daemon failed: %s", why(errno));
            close(env_fd); close(errp[0]); close(errp[1]);
            return -1;
        }
        off += (size_t)n;
    }
    lseek(env_fd, 0, SEEK_SET);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, msg_fd, 0);
    posix_spawn_file_actions_adddup2(&fa, env_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], FD6);
    char *argv[] = {(char *)program, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, program, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(env_fd);
    close(errp[1]);
    close_fds(a);
    static char cannot[512];
    res->text = NULL;
    res->text_len = 0;
    if (err) {
        snprintf(cannot, sizeof cannot, "Zqscan: cannot run qmail-queue (%s) (#4.3.0)", strerror(err));
        res->code = CUSTOM_ERROR;
        res->text = (const unsigned char *)cannot;
        res->text_len = strlen(cannot);
        say("cannot run qmail-queue %s: %s", program, why(err));
    } else {
        int status = 0;
        pid_t got = wait_pid(pid, timeout, &status);
        if (got == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            res->code = TIMEOUT;
            say("qmail-queue %s did not finish within %g s: killed", program, timeout);
        } else if (got < 0) {
            res->code = TEMP_REJECT;
        } else {
            res->code = WIFEXITED(status) ? WEXITSTATUS(status) : TEMP_REJECT;
        }
        if (res->code == CUSTOM_ERROR) {  /* its text: NUL, CR, LF stripped at both ends, D/Z only */
            fcntl(errp[0], F_SETFL, O_NONBLOCK);
            ssize_t n = read(errp[0], text_store, 4096);
            size_t b = 0, e = n > 0 ? (size_t)n : 0;
            while (b < e && (text_store[b] == 0 || text_store[b] == '\r' || text_store[b] == '\n')) b++;
            while (e > b && (text_store[e - 1] == 0 || text_store[e - 1] == '\r' || text_store[e - 1] == '\n')) e--;
            if (e > b && (text_store[b] == 'D' || text_store[b] == 'Z')) {
                res->text = text_store + b;
                res->text_len = e - b;
            }
        }
    }
    close(errp[0]);
    /* the report: S, the code, and the text */
    char num[8];
    int k = snprintf(num, sizeof num, "%d", res->code);
    size_t body = (size_t)k + (res->text_len ? 1 + res->text_len : 0);
    unsigned char h[5];
    frame_head(h, 'S', body);
    struct iovec iov[4] = {{h, 5}, {num, (size_t)k}, {(void *)"\n", res->text_len ? 1 : 0},
                           {(void *)res->text, res->text_len}};
    double deadline = now() + REPORT_WAIT;
    if (send_iov(sock, iov, 4, deadline) < 0) {
        say("cannot report qmail-queue's exit to the daemon: %s", errno == ETIMEDOUT ? "timed out" : why(errno));
    } else if (res->code != QUEUED) {
        /* The daemon closes the connection once message.queue_failed is in the journal: the
         * sender's retry then comes after it. Whatever happens, qmail gets qmail-queue's answer. */
        struct pollfd p = {sock, POLLIN, 0};
        int r;
        do {
            r = poll(&p, 1, ms_left(deadline));
        } while (r < 0 && errno == EINTR);
        if (r > 0) {
            char c;
            if (recv(sock, &c, 1, 0) < 0 && errno != EAGAIN)
                say("cannot report qmail-queue's exit to the daemon: %s", why(errno));
        }
    }
    return 0;
}

static double env_timeout(void) {
    const char *s = getenv("QSCAN_TIMEOUT");
    double t = DEFAULT_TIMEOUT;
    if (s && *s) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        while (*end == ' ' || *end == '\t' || *end == '\n') end++;
        if (end != s && *end == 0) t = v;
    }
    if (!(t > 0)) t = DEFAULT_TIMEOUT;  /* also NaN */
    return t < MAX_TIMEOUT ? t : MAX_TIMEOUT;
}

/* The whole exchange; returns the answer (code, text) to map for qmail. */
static struct result run(void) {
    struct result r = {TEMP_REJECT, (const unsigned char *)TEMP_TEXT, sizeof TEMP_TEXT - 1};
    struct result out = {0, NULL, 0};
    const char *path = getenv("QSCAN_SOCKET");
    if (!path || !*path) path = DEFAULT_SOCKET;
    double timeout = env_timeout();
    struct buf msg = {0}, env = {0}, head = {0};
    if (read_all(0, &msg) < 0 || read_all(1, &env) < 0) { out.code = READ_ERROR; return out; }
    if (env.len > MAX_CHUNK) {
        say("envelope of %zu bytes is over %u: refused permanently", env.len, MAX_CHUNK);
        out.code = CUSTOM_ERROR;
        out.text = (const unsigned char *)ENVELOPE_TEXT;
        out.text_len = sizeof ENVELOPE_TEXT - 1;
        return out;
    }
    const char *bad = NULL;
    int verdict = check_envelope(env.p, env.len, &bad);
    if (verdict == CUSTOM_ERROR) {
        say("envelope refused permanently: %s", bad);
        out.code = CUSTOM_ERROR;
        out.text = (const unsigned char *)FORMAT_TEXT;
        out.text_len = sizeof FORMAT_TEXT - 1;
        return out;
    }
    if (verdict) { out.code = verdict; return out; }
    buf_frame(&head, 'H', "QSCAN/1", 7);
    for (size_t i = 0; i < sizeof PASSED_ENV / sizeof PASSED_ENV[0]; i++) {
        const char *v = getenv(PASSED_ENV[i]);
        if (!v || strlen(v) > MAX_VALUE) continue;
        char attr[64 + MAX_VALUE];
        int n = snprintf(attr, sizeof attr, "%s=%s", PASSED_ENV[i], v);
        buf_frame(&head, 'A', attr, (size_t)n);
    }
    char attr[64];
    int n = 0;
    for (int prec = 1; prec <= 17; prec++) {  /* the shortest text that reads back the same */
        n = snprintf(attr, sizeof attr, "QSCAN_TIMEOUT=%.*g", prec, timeout);
        if (strtod(attr + 14, NULL) == timeout) break;
    }
    if (!strpbrk(attr + 14, ".en")) n += snprintf(attr + n, sizeof attr - (size_t)n, ".0");
    buf_frame(&head, 'A', attr, (size_t)n);
    /* connect */
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = {0};
    sa.sun_family = AF_UNIX;
    const char *fail = NULL;
    int e = 0;
    if (sock < 0) e = errno;
    else if (strlen(path) >= sizeof sa.sun_path) fail = "AF_UNIX path too long";
    else {
        memcpy(sa.sun_path, path, strlen(path));
        if (connect(sock, (struct sockaddr *)&sa, sizeof sa) < 0) e = errno;
    }
    if (e || fail) {
        gid_t groups[NGROUPS_MAX];
        int ng = getgroups(NGROUPS_MAX, groups);
        char gl[1024] = "-";
        size_t at = 0;
        for (int i = 0; i < ng && at < sizeof gl - 16; i++)
            at += (size_t)snprintf(gl + at, sizeof gl - at, "%s%u", i ? "," : "", (unsigned)groups[i]);
        say("cannot connect to %s: %s (uid %u, gid %u, groups %s)", path, fail ? fail : why(e),
            (unsigned)getuid(), (unsigned)getgid(), gl);
        return r;
    }
    /* the request: head, the message in frames of at most MAX_CHUNK, the envelope, the end */
    size_t chunks = (msg.len + MAX_CHUNK - 1) / MAX_CHUNK, cnt = 0;
    struct iovec *iov = calloc(2 * chunks + 4, sizeof *iov);
    unsigned char (*hs)[5] = calloc(chunks + 2, 5);
    if (!iov || !hs) die_oom();
    iov[cnt++] = (struct iovec){head.p, head.len};
    for (size_t i = 0; i < chunks; i++) {
        size_t len = msg.len - i * MAX_CHUNK < MAX_CHUNK ? msg.len - i * MAX_CHUNK : MAX_CHUNK;
        frame_head(hs[i], 'M', len);
        iov[cnt++] = (struct iovec){hs[i], 5};
        iov[cnt++] = (struct iovec){msg.p + i * MAX_CHUNK, len};
    }
    frame_head(hs[chunks], 'V', env.len);
    iov[cnt++] = (struct iovec){hs[chunks], 5};
    iov[cnt++] = (struct iovec){env.p, env.len};
    frame_head(hs[chunks + 1], 'Q', 0);
    iov[cnt++] = (struct iovec){hs[chunks + 1], 5};
    static struct answer a;
    if (send_iov(sock, iov, cnt, now() + timeout) < 0) {
        if (errno == ETIMEDOUT) {
            say("no answer from the daemon within QSCAN_TIMEOUT (%g s)", timeout);
            return r;
        }
        e = errno;
        /* The daemon may have answered before reading it all (refused peer, envelope too
         * large) and closed: its answer is still there to read. */
        struct pollfd p = {sock, POLLIN, 0};
        if (poll(&p, 1, 1000) > 0 && recv_answer(sock, &a) > 0 && a.len >= 5 && a.buf[0] == 'R'
                && a.nfds == 0) {
            size_t len = ((size_t)a.buf[1] << 24) | ((size_t)a.buf[2] << 16) | ((size_t)a.buf[3] << 8) | a.buf[4];
            if (len <= MAX_CONTROL && a.len - 5 >= len) {
                if (decode_result(a.buf + 5, len, &out) == 0) return out;
                say("talking to the daemon failed: bad result from the daemon");
                return r;
            }
        }
        close_fds(&a);
        say("talking to the daemon failed: %s", why(e));
        return r;
    }
    free(iov);
    free(hs);
    free(msg.p);
    msg.p = NULL;
    double deadline = now() + timeout;  /* the daemon's clock starts now too */
    for (;;) {
        int ms = ms_left(deadline);
        if (ms == 0) {
            say("no answer from the daemon within QSCAN_TIMEOUT (%g s)", timeout);
            break;
        }
        struct pollfd p = {sock, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0) continue;
        ssize_t got = recv_answer(sock, &a);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            say("talking to the daemon failed: %s", why(errno));
            break;
        }
        if (got == 0) {
            say("the daemon closed the connection without an answer");
            break;
        }
        if (a.len < 5) continue;
        if (a.buf[0] != 'R' && a.buf[0] != 'X') {
            say("talking to the daemon failed: unexpected frame type 0x%02x from the daemon", a.buf[0]);
            break;
        }
        size_t len = ((size_t)a.buf[1] << 24) | ((size_t)a.buf[2] << 16) | ((size_t)a.buf[3] << 8) | a.buf[4];
        if (len > MAX_CONTROL) {
            say("talking to the daemon failed: answer frame of %zu bytes from the daemon is too large", len);
            break;
        }
        if (a.len - 5 < len) continue;
        if (a.buf[0] == 'X') {
            if (hand_off(sock, &a, a.buf + 5, len, &env, &out) == 0) {
                close(sock);
                return out;
            }
            break;
        }
        if (a.nfds) {
            say("talking to the daemon failed: descriptor from the daemon without a hand-off");
            break;
        }
        if (decode_result(a.buf + 5, len, &out) == 0) {
            close(sock);
            return out;
        }
        say("talking to the daemon failed: bad result from the daemon");
        break;
    }
    close_fds(&a);
    close(sock);
    return r;
}

/* (code, text) to what qmail expects, writing the text to fd 6 when it is open. */
static int finish(struct result r, int fd6_open) {
    if (r.code == CUSTOM_ERROR || r.text_len) {
        if (r.text_len && (r.text[0] == 'D' || r.text[0] == 'Z')) {
            if (fd6_open) {
                size_t n = r.text_len < MAX_TEXT ? r.text_len : MAX_TEXT;
                if (write(FD6, r.text, n) >= 0) return CUSTOM_ERROR;
            }
            return r.text[0] == 'D' ? PERM_REJECT : TEMP_REJECT;
        }
        if (r.code == CUSTOM_ERROR) return TEMP_REJECT;  /* 82 without usable text: be safe */
    }
    return r.code;
}

int main(void) {
    int fd6_open = fcntl(FD6, F_GETFD) >= 0;
    if (fcntl(2, F_GETFD) < 0) {  /* stderr closed: keep our own sockets and files off fd 2 */
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0 && fd != 2) close(fd);
    }
    _exit(finish(run(), fd6_open));
}
