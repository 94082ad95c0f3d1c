/*
 * mpconn_cli.c - the `mpconn` command-line tool: listen for clients and
 * print what they send, or connect and send messages, speaking the wire
 * protocol of CPython's multiprocessing.connection (framing and the authkey
 * handshake in either dialect).  Built only on the public header.  It is a
 * debugging and scripting aid: one client at a time, one line of output per
 * message, one line on stderr per failure, distinct exit codes.
 */
#include "mpconn.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    EXIT_OK = 0,
    EXIT_OTHER = 1,
    EXIT_USAGE = 2,
    EXIT_CONNECT = 3,
    EXIT_AUTH = 4,
    EXIT_TIMEOUT = 5,
    EXIT_PROTOCOL = 6,
    EXIT_EOF = 7,
    EXIT_REFUSED = 8, /* --decode: a received value was refused or not printed */
    EXIT_TLS = 9      /* TLS: certificate/key/CA files, the TLS handshake, a record */
};

static const char usage_text[] =
    "usage: mpconn listen ADDRESS [options] [--count N] [--echo] [--decode]\n"
    "       mpconn send ADDRESS [options] [--recv N] [--decode] [--value EXPR]...\n"
    "                   [MESSAGE...]\n"
    "       mpconn --help | --version\n"
    "\n"
    "Speaks the wire protocol of Python's multiprocessing.connection.\n"
    "\n"
    "ADDRESS is host:port, [v6]:port, /path/to/socket (anything with a '/'\n"
    "or without a ':'), or @name (Linux abstract socket).  Port 0 picks a\n"
    "free port; `listen` prints \"listening on ADDRESS\" to stderr first.\n"
    "\n"
    "listen   accept clients one after another and print every message they\n"
    "         send on its own line.  A client that fails the handshake or\n"
    "         misbehaves gets one line on stderr; the next client is served.\n"
    "  --count N      exit after N messages (default: run until killed);\n"
    "                 refused values count too (see exit status 8)\n"
    "  --echo         send every message back to its sender (with --decode:\n"
    "                 the value, pickled again at --protocol)\n"
    "  --decode       messages are pickles, as Connection.send(obj) writes\n"
    "                 them: print each value exactly as Python's repr() does\n"
    "                 on the sending side (sets in the order the sender's set\n"
    "                 iterated, as its repr() shows them).  Only plain values\n"
    "                 are accepted (None, bool, int, float, str, bytes,\n"
    "                 bytearray, list, tuple, dict, set, frozenset); a pickle\n"
    "                 that would import or call anything else (os.system...)\n"
    "                 is refused, nothing is run, one line on stderr names the\n"
    "                 opcode and the global, and the next message is read.\n"
    "                 Texts over 16 MiB are not printed (an error line).\n"
    "send     connect, send each MESSAGE as one message (each line of stdin\n"
    "         when no MESSAGE or --value is given), then print N received\n"
    "         messages.  MESSAGEs and --values are sent in command-line order.\n"
    "  --value EXPR   send a Python literal as Connection.send(obj) does (a\n"
    "                 pickle): None, True, 42, 1.5, 'text', b'bytes', [lists],\n"
    "                 (tuples,), {'dicts': 1}, {sets}, set(), frozenset(...),\n"
    "                 bytearray(b'..'), inf, nan.  Repeatable.  --value -\n"
    "                 reads one EXPR per line of stdin (for long values)\n"
    "  --protocol N   pickle protocol for --value and --echo: 2 (for Python\n"
    "                 2.7 peers), 3, 4 (default, what Python 3.8-3.13 send)\n"
    "                 or 5\n"
    "  --recv N       messages to receive and print after sending (default 0)\n"
    "  --decode       print received messages as values (see listen); a\n"
    "                 refused one gives an error line and exit status 8\n"
    "\n"
    "options:\n"
    "  --authkey KEY        authenticate with KEY (the handshake of Listener/\n"
    "                       Client with authkey=KEY)\n"
    "  --authkey-file FILE  the key is the file's bytes, minus one trailing\n"
    "                       newline; MPCONN_AUTHKEY in the environment also\n"
    "                       sets the key.  Without a key: no handshake.\n"
    "  --dialect D          modern (default; CPython >= 3.12, accepts older\n"
    "                       peers), legacy (as CPython <= 3.11), strict\n"
    "                       (modern without MD5)\n"
    "  --hex                messages are printed, and given, as lowercase hex\n"
    "  --timeout SECONDS    give up waiting for a client, a connection or a\n"
    "                       message after this long; also the handshake\n"
    "                       deadline (default handshake deadline: 10 s)\n"
    "  --handshake-timeout SECONDS\n"
    "                       the handshake deadline alone (overrides --timeout\n"
    "                       for it), e.g. a long-lived listener that drops\n"
    "                       silent clients quickly\n"
    "  --backlog N          listen: queue of pending connections (default 1,\n"
    "                       as CPython's Listener)\n"
    "  --read-ahead         read through a 64 KiB buffer (fewer system calls\n"
    "                       for many small messages); by default each message\n"
    "                       is read exactly, leaving what follows in the kernel\n"
    "\n"
    "TLS (TCP or Unix socket; the TLS handshake comes first, then the authkey\n"
    "handshake and the messages inside TLS; both ends must use TLS):\n"
    "  --tls-cert FILE      our certificate (PEM, chain allowed); required to\n"
    "                       listen with TLS, a client gives it for mutual TLS\n"
    "  --tls-key FILE       its private key (PEM; default: in --tls-cert)\n"
    "  --tls-ca FILE        CA certificates (PEM) to verify the peer with.\n"
    "                       send: default the system's store; listen: given,\n"
    "                       clients must present a certificate it signed\n"
    "  --tls-capath DIR     the same from a hashed directory (c_rehash)\n"
    "  --tls-server-name NAME\n"
    "                       send: the name the server's certificate must carry\n"
    "                       (and the SNI); default: the host of ADDRESS\n"
    "  --tls-no-verify      send: do not verify the server (explicit; insecure)\n"
    "  Any --tls-* option turns TLS on (listen needs --tls-cert).\n"
    "\n"
    "exit status: 0 success, 1 other error, 2 usage, 3 cannot connect or\n"
    "listen, 4 authentication failed, 5 timed out, 6 protocol error (bad\n"
    "message length, truncated message), 7 the peer closed the connection\n"
    "before the expected messages arrived, 8 with --decode: a received value\n"
    "was refused or not printed (all the other messages were handled),\n"
    "9 TLS error (a certificate, key or CA file that does not load, a server\n"
    "certificate that does not verify, a peer that does not speak TLS).\n";

struct cli {
    const char *cmd;
    const char *address;
    unsigned char *key;
    size_t key_len;
    int have_key;
    mpc_dialect dialect;
    int hex;
    int echo;
    int decode;
    int protocol;       /* for --value / --echo --decode; 0 = the default (4) */
    mpc_value **values; /* per message: the parsed --value, or NULL for a MESSAGE */
    char *from_stdin;   /* per message: 1 for "--value -" (values from stdin lines) */
    long count;
    long recv;
    double timeout; /* seconds; < 0 = none */
    double handshake_timeout; /* seconds; < 0 = from --timeout or 10 s */
    long backlog;             /* 0 = the library's default (1) */
    int read_ahead;           /* --read-ahead */
    int use_tls;              /* any --tls-* option */
    mpc_tls_options tls;      /* borrowed strings from argv */
    char **messages;
    int nmessages;
};

static int usage_error(const char *fmt, const char *arg)
{
    fputs("mpconn: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nTry 'mpconn --help'.\n", stderr);
    return EXIT_USAGE;
}

static int exit_code(mpc_status st)
{
    switch (st) {
    case MPC_OK: return EXIT_OK;
    case MPC_AUTH: return EXIT_AUTH;
    case MPC_TIMEOUT: return EXIT_TIMEOUT;
    case MPC_PROTO:
    case MPC_TOOLONG:
    case MPC_TRUNCATED: return EXIT_PROTOCOL;
    case MPC_EOF: return EXIT_EOF;
    case MPC_INVAL: return EXIT_USAGE;
    case MPC_RESOLVE: return EXIT_CONNECT;
    case MPC_TLS: return EXIT_TLS;
    default: return EXIT_OTHER;
    }
}

/* One line on stderr for a failure; authentication and TLS failures say so
 * first (the core's TLS messages mostly start with "TLS" already). */
static void report(const char *context, mpc_status st, const char *message)
{
    const char *text = message && *message ? message : mpc_strerror(st);
    fprintf(stderr, "mpconn: %s%s%s%s\n", context ? context : "", context ? ": " : "",
            st == MPC_AUTH                                  ? "authentication failed: "
            : st == MPC_TLS && strncmp(text, "TLS", 3) != 0 ? "TLS error: "
                                                            : "",
            text);
}

static int read_key_file(struct cli *c, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "mpconn: cannot read key file %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 256, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            fprintf(stderr, "mpconn: out of memory\n");
            return -1;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        unsigned char *nb = realloc(buf, cap);
        if (!nb)
            free(buf);
        buf = nb;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        fprintf(stderr, "mpconn: cannot read key file %s\n", path);
        return -1;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    free(c->key);
    c->key = buf;
    c->key_len = n;
    c->have_key = 1;
    return 0;
}

static void set_key(struct cli *c, const char *s)
{
    free(c->key);
    c->key_len = strlen(s);
    c->key = malloc(c->key_len + 1);
    if (c->key)
        memcpy(c->key, s, c->key_len + 1);
    c->have_key = c->key != NULL;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(struct cli *c, int argc, char **argv)
{
    const char *key_file = NULL;
    const char *key_arg = NULL;
    c->cmd = argv[1];
    c->timeout = -1;
    c->handshake_timeout = -1;
    c->messages = calloc((size_t)argc, sizeof *c->messages);
    c->values = calloc((size_t)argc, sizeof *c->values);
    c->from_stdin = calloc((size_t)argc, 1);
    if (!c->messages || !c->values || !c->from_stdin)
        return EXIT_OTHER;
    int listen = strcmp(c->cmd, "listen") == 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--hex") == 0) {
            c->hex = 1;
        } else if (listen && strcmp(a, "--echo") == 0) {
            c->echo = 1;
        } else if (strcmp(a, "--decode") == 0) {
            c->decode = 1;
        } else if (strcmp(a, "--read-ahead") == 0) {
            c->read_ahead = 1;
        } else if (strcmp(a, "--tls-no-verify") == 0) {
            if (listen)
                return usage_error("%s", "--tls-no-verify is for send (a listener verifies "
                                         "clients only when given --tls-ca/--tls-capath)");
            c->tls.no_verify = 1;
            c->use_tls = 1;
        } else if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++) {
                if (!c->address)
                    c->address = argv[i];
                else
                    c->messages[c->nmessages++] = argv[i];
            }
            break;
        } else if (a[0] == '-' && a[1] == '-') {
            static const char *const known[] = {"--authkey", "--authkey-file", "--dialect",
                                                "--timeout", "--count",        "--recv",
                                                "--value",   "--protocol",
                                                "--handshake-timeout", "--backlog",
                                                "--tls-cert",  "--tls-key",
                                                "--tls-ca",    "--tls-capath",
                                                "--tls-server-name"};
            int ok = 0;
            for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
                ok |= strcmp(a, known[k]) == 0;
            if (!ok || (listen && strcmp(a, "--recv") == 0) ||
                (listen && strcmp(a, "--value") == 0) ||
                (!listen && strcmp(a, "--count") == 0) ||
                (!listen && strcmp(a, "--backlog") == 0) ||
                (listen && strcmp(a, "--tls-server-name") == 0))
                return usage_error("unknown option %s", a);
            if (!v)
                return usage_error("option %s needs a value", a);
            if (strcmp(a, "--authkey") == 0) {
                key_arg = v;
            } else if (strcmp(a, "--authkey-file") == 0) {
                key_file = v;
            } else if (strcmp(a, "--dialect") == 0) {
                if (strcmp(v, "modern") == 0)
                    c->dialect = MPC_DIALECT_MODERN;
                else if (strcmp(v, "legacy") == 0)
                    c->dialect = MPC_DIALECT_LEGACY;
                else if (strcmp(v, "strict") == 0)
                    c->dialect = MPC_DIALECT_STRICT;
                else
                    return usage_error("unknown dialect '%s' (modern, legacy or strict)", v);
            } else if (strncmp(a, "--tls-", 6) == 0) {
                if (!*v)
                    return usage_error("option %s needs a non-empty value", a);
                const char **slot = strcmp(a, "--tls-cert") == 0     ? &c->tls.certificate
                                    : strcmp(a, "--tls-key") == 0    ? &c->tls.key
                                    : strcmp(a, "--tls-ca") == 0     ? &c->tls.cafile
                                    : strcmp(a, "--tls-capath") == 0 ? &c->tls.capath
                                                                     : &c->tls.server_name;
                *slot = v;
                c->use_tls = 1;
            } else if (strcmp(a, "--timeout") == 0) {
                char *end;
                c->timeout = strtod(v, &end);
                if (end == v || *end || !(c->timeout >= 0) || c->timeout > 1e9)
                    return usage_error("bad --timeout '%s' (seconds)", v);
            } else if (strcmp(a, "--handshake-timeout") == 0) {
                char *end;
                c->handshake_timeout = strtod(v, &end);
                if (end == v || *end || !(c->handshake_timeout > 0) || c->handshake_timeout > 1e9)
                    return usage_error("bad --handshake-timeout '%s' (seconds > 0)", v);
            } else if (listen && strcmp(a, "--backlog") == 0) {
                if (parse_long(v, &c->backlog) < 0 || c->backlog < 1 || c->backlog > 65535)
                    return usage_error("bad --backlog '%s' (1 to 65535)", v);
            } else if (listen && strcmp(a, "--count") == 0) {
                if (parse_long(v, &c->count) < 0)
                    return usage_error("bad --count '%s'", v);
            } else if (!listen && strcmp(a, "--recv") == 0) {
                if (parse_long(v, &c->recv) < 0)
                    return usage_error("bad --recv '%s'", v);
            } else if (strcmp(a, "--protocol") == 0) {
                long p;
                if (parse_long(v, &p) < 0 || p < 2 || p > 5)
                    return usage_error("bad --protocol '%s' (2, 3, 4 or 5)", v);
                c->protocol = (int)p;
            } else if (!listen && strcmp(a, "--value") == 0 && strcmp(v, "-") == 0) {
                c->from_stdin[c->nmessages] = 1;
                c->messages[c->nmessages++] = (char *)v;
            } else if (!listen && strcmp(a, "--value") == 0) {
                mpc_value *val = NULL;
                mpc_error pe;
                if (mpc_value_parse(v, strlen(v), &val, &pe) != MPC_OK) {
                    fprintf(stderr, "mpconn: bad --value \"%.60s%s\": %s\n", v,
                            strlen(v) > 60 ? "..." : "", pe.message);
                    fputs("Try 'mpconn --help'.\n", stderr);
                    return EXIT_USAGE;
                }
                c->values[c->nmessages] = val;
                c->messages[c->nmessages++] = (char *)v;
            } else {
                return usage_error("unknown option %s", a);
            }
            i++; /* the option's value, used above */
            continue;
        } else if (!c->address) {
            c->address = a;
        } else if (!listen) {
            c->messages[c->nmessages++] = argv[i];
        } else {
            return usage_error("unexpected argument '%s'", a);
        }
    }
    if (!c->address)
        return usage_error("%s needs an ADDRESS", c->cmd);
    if (listen && c->decode && c->hex)
        return usage_error("%s", "--decode prints values; it cannot be combined with --hex");
    if (listen && c->use_tls && !c->tls.certificate)
        return usage_error("%s", "listen with TLS needs --tls-cert (and --tls-key unless the "
                                 "key is in that file)");
    if (c->tls.key && !c->tls.certificate)
        return usage_error("%s", "--tls-key needs --tls-cert");
    if (c->tls.no_verify && (c->tls.cafile || c->tls.capath || c->tls.server_name))
        return usage_error("%s", "--tls-no-verify contradicts --tls-ca, --tls-capath and "
                                 "--tls-server-name");
    if (key_arg && key_file)
        return usage_error("%s", "give --authkey or --authkey-file, not both");
    if (key_file) {
        if (read_key_file(c, key_file) < 0)
            return EXIT_USAGE;
    } else if (key_arg) {
        set_key(c, key_arg);
    } else {
        const char *env = getenv("MPCONN_AUTHKEY");
        if (env)
            set_key(c, env);
    }
    return EXIT_OK;
}

/* The files the TLS options name must be readable: OpenSSL's own reason
 * for a missing file is only "system lib", so say which option and why. */
static int check_tls_files(const struct cli *c)
{
    const struct {
        const char *opt, *path;
        int dir;
    } files[] = {{"--tls-cert", c->tls.certificate, 0}, {"--tls-key", c->tls.key, 0},
                 {"--tls-ca", c->tls.cafile, 0},        {"--tls-capath", c->tls.capath, 1}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct stat sb;
        const char *p = files[i].path;
        if (!p)
            continue;
        int bad = stat(p, &sb) != 0;
        if (!bad && files[i].dir != !!S_ISDIR(sb.st_mode)) {
            errno = files[i].dir ? ENOTDIR : EISDIR;
            bad = 1;
        }
        if (!bad)
            bad = access(p, files[i].dir ? R_OK | X_OK : R_OK) != 0;
        if (bad) {
            fprintf(stderr, "mpconn: TLS: cannot read %s %s: %s\n", files[i].opt, p,
                    strerror(errno));
            return EXIT_TLS;
        }
    }
    return EXIT_OK;
}

static void fill_options(const struct cli *c, mpc_options *o)
{
    mpc_options_init(o);
    if (c->have_key) {
        o->authkey = c->key;
        o->authkey_len = c->key_len;
    }
    o->dialect = c->dialect;
    o->handshake_timeout = 10000;
    if (c->timeout >= 0) {
        mpc_ms ms = (mpc_ms)(c->timeout * 1000.0 + 0.999);
        o->handshake_timeout = ms > 0 ? ms : 1;
        o->connect_timeout = ms > 0 ? ms : 1;
        o->io_timeout = ms > 0 ? ms : 1;
    }
    if (c->handshake_timeout > 0) {
        mpc_ms ms = (mpc_ms)(c->handshake_timeout * 1000.0 + 0.999);
        o->handshake_timeout = ms > 0 ? ms : 1;
    }
    o->backlog = (int)c->backlog;
    o->read_ahead = c->read_ahead;
    o->tls = c->use_tls ? &c->tls : NULL;
}

static int print_message(const struct cli *c, const unsigned char *p, size_t n)
{
    if (c->hex) {
        /* Hex in 8 KiB chunks: one fwrite per chunk, not a call per digit
         * (a 64 MiB message is 128 MiB of text). */
        static const char digits[] = "0123456789abcdef";
        char out[8192];
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            out[o++] = digits[p[i] >> 4];
            out[o++] = digits[p[i] & 15];
            if (o == sizeof out) {
                fwrite(out, 1, o, stdout);
                o = 0;
            }
        }
        if (o)
            fwrite(out, 1, o, stdout);
    } else if (n) {
        fwrite(p, 1, n, stdout);
    }
    putchar('\n');
    return fflush(stdout) == 0 ? 0 : -1;
}

/* The most text printed for one received value: a hostile pickle that
 * shares one sub-object through its memo can have an astronomically long
 * repr, so the printer stops at this size. */
#define REPR_LIMIT ((size_t)16 * 1024 * 1024)

/* Prints v as Python's repr() on its own line.  Returns 0, 1 when the value
 * was not printed (a line on stderr says why), -1 when stdout failed. */
static int print_value(const char *who, const mpc_value *v)
{
    char *text = NULL;
    size_t len = 0;
    mpc_error e;
    mpc_status st = mpc_value_repr_limit(v, REPR_LIMIT, &text, &len, &e);
    if (st != MPC_OK) {
        fprintf(stderr, "mpconn: value from %s not printed: %s\n", who, e.message);
        return 1;
    }
    fwrite(text, 1, len, stdout);
    mpc_free(text);
    putchar('\n');
    return fflush(stdout) == 0 ? 0 : -1;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes hex in place; returns the new length or -1. */
static long unhex(char *s, size_t n)
{
    if (n % 2)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        s[i / 2] = (char)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

/* Sends one value per line of stdin ("--value -"); empty lines are
 * skipped.  A line that does not parse stops with a usage error. */
static int send_stdin_values(const struct cli *c, mpc_conn *conn)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = EXIT_OK;
    while (rc == EXIT_OK && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (n == 0)
            continue;
        mpc_value *v = NULL;
        mpc_error e;
        if (mpc_value_parse(line, (size_t)n, &v, &e) != MPC_OK) {
            fprintf(stderr, "mpconn: bad value on stdin line %ld: %s\n", lineno, e.message);
            rc = EXIT_USAGE;
            break;
        }
        mpc_status st = mpc_send_value(conn, v, c->protocol);
        mpc_value_free(v);
        if (st != MPC_OK) {
            report(NULL, st, mpc_conn_errmsg(conn));
            rc = exit_code(st) == EXIT_OTHER ? EXIT_CONNECT : exit_code(st);
        }
    }
    free(line);
    return rc;
}

/* Sends one message given as text (or hex). */
static int send_text(const struct cli *c, mpc_conn *conn, char *s, size_t n)
{
    if (c->hex) {
        long m = unhex(s, n);
        if (m < 0) {
            fprintf(stderr, "mpconn: not hex: '%.*s'\n", (int)(n > 40 ? 40 : n), s);
            return EXIT_USAGE;
        }
        n = (size_t)m;
    }
    mpc_status st = mpc_send_bytes(conn, s, n);
    if (st != MPC_OK) {
        report(NULL, st, mpc_conn_errmsg(conn));
        return exit_code(st) == EXIT_OTHER ? EXIT_CONNECT : exit_code(st);
    }
    return EXIT_OK;
}

static int cmd_send(const struct cli *c)
{
    mpc_options o;
    mpc_error e;
    mpc_conn *conn = NULL;
    fill_options(c, &o);
    mpc_status st = mpc_connect(c->address, &o, &conn, &e);
    if (st != MPC_OK) {
        report(NULL, st, e.message);
        return st == MPC_OS ? EXIT_CONNECT : exit_code(st);
    }
    int rc = EXIT_OK;
    if (c->nmessages > 0) {
        for (int i = 0; i < c->nmessages && rc == EXIT_OK; i++) {
            if (c->from_stdin[i]) {
                rc = send_stdin_values(c, conn);
            } else if (c->values[i]) {
                st = mpc_send_value(conn, c->values[i], c->protocol);
                if (st != MPC_OK) {
                    report(NULL, st, mpc_conn_errmsg(conn));
                    rc = exit_code(st) == EXIT_OTHER ? EXIT_CONNECT : exit_code(st);
                }
            } else {
                rc = send_text(c, conn, c->messages[i], strlen(c->messages[i]));
            }
        }
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while (rc == EXIT_OK && (n = getline(&line, &cap, stdin)) >= 0) {
            if (n > 0 && line[n - 1] == '\n')
                n--;
            rc = send_text(c, conn, line, (size_t)n);
        }
        free(line);
    }
    int refused = 0;
    for (long i = 0; rc == EXIT_OK && i < c->recv; i++) {
        void *msg = NULL;
        size_t len = 0;
        if (c->decode) {
            mpc_value *v = NULL;
            st = mpc_recv_value(conn, NULL, &v);
            if (st == MPC_OK) {
                int pr = print_value("the peer", v);
                mpc_value_free(v);
                if (pr < 0)
                    rc = EXIT_OTHER;
                refused |= pr > 0;
                continue;
            }
            if (st == MPC_VALUE) {
                fprintf(stderr, "mpconn: refused value from the peer: %s\n",
                        mpc_conn_errmsg(conn));
                refused = 1;
                continue;
            }
        } else {
            st = mpc_recv_bytes(conn, MPC_NO_LIMIT, &msg, &len);
        }
        if (st == MPC_EOF) {
            fprintf(stderr, "mpconn: the peer closed the connection after %ld of %ld messages\n",
                    i, c->recv);
            rc = EXIT_EOF;
        } else if (st != MPC_OK) {
            report(NULL, st, mpc_conn_errmsg(conn));
            rc = exit_code(st);
        } else {
            if (print_message(c, msg, len) < 0)
                rc = EXIT_OTHER;
            mpc_free(msg);
        }
    }
    mpc_conn_close(conn);
    if (rc == EXIT_OK && refused)
        rc = EXIT_REFUSED;
    return rc;
}

static int cmd_listen(const struct cli *c)
{
    mpc_options o;
    mpc_error e;
    mpc_listener *l = NULL;
    fill_options(c, &o);
    /* Clients are served one at a time, so without --timeout only the
     * handshake has a deadline (10 s): a silent client cannot block the
     * others before it is authenticated. */
    mpc_ms io_timeout = o.io_timeout;
    o.io_timeout = 0;
    mpc_status st = mpc_listen(c->address, &o, &l, &e);
    if (st != MPC_OK) {
        report(NULL, st, e.message);
        return st == MPC_OS ? EXIT_CONNECT : exit_code(st);
    }
    fprintf(stderr, "listening on %s\n", mpc_listener_address(l));
    fflush(stderr);
    mpc_ms accept_ms = c->timeout >= 0 ? (mpc_ms)(c->timeout * 1000.0 + 0.999) : MPC_FOREVER;
    long received = 0;
    int rc = EXIT_OK, refused = 0;
    while (c->count == 0 || received < c->count) {
        mpc_conn *conn = NULL;
        st = mpc_listener_accept(l, accept_ms, &conn, &e);
        if (st != MPC_OK) {
            if (strncmp(e.message, "accept:", 7) == 0) {
                /* The listener itself failed or nobody came in time. */
                if (st == MPC_TIMEOUT)
                    fprintf(stderr, "mpconn: no client within %g s\n", c->timeout);
                else
                    report(NULL, st, e.message);
                rc = st == MPC_OS ? EXIT_OTHER : exit_code(st);
                break;
            }
            report("client rejected", st, e.message);
            continue;
        }
        if (io_timeout > 0)
            mpc_conn_set_timeout(conn, io_timeout);
        char peer[160];
        snprintf(peer, sizeof peer, "client %s", *mpc_conn_peer(conn) ? mpc_conn_peer(conn) : "");
        if (!*mpc_conn_peer(conn))
            snprintf(peer, sizeof peer, "client");
        while (c->count == 0 || received < c->count) {
            if (c->decode) {
                mpc_value *v = NULL;
                st = mpc_recv_value(conn, NULL, &v);
                if (st == MPC_EOF)
                    break;
                if (st == MPC_VALUE || st == MPC_NOMEM) {
                    /* The whole message was read: the stream is in step. */
                    received++;
                    refused = 1;
                    fprintf(stderr, "mpconn: refused value from %s: %s\n", peer,
                            mpc_conn_errmsg(conn));
                    fflush(stderr);
                    continue;
                }
                if (st != MPC_OK) {
                    report(peer, st, mpc_conn_errmsg(conn));
                    break;
                }
                received++;
                int pr = print_value(peer, v);
                if (c->echo && mpc_send_value(conn, v, c->protocol) != MPC_OK)
                    report(peer, mpc_conn_status(conn), mpc_conn_errmsg(conn));
                mpc_value_free(v);
                if (pr < 0) {
                    rc = EXIT_OTHER;
                    break;
                }
                refused |= pr > 0;
                continue;
            }
            void *msg = NULL;
            size_t len = 0;
            st = mpc_recv_bytes(conn, MPC_NO_LIMIT, &msg, &len);
            if (st == MPC_EOF)
                break;
            if (st != MPC_OK) {
                report(peer, st, mpc_conn_errmsg(conn));
                break;
            }
            received++;
            int bad = print_message(c, msg, len) < 0;
            if (c->echo && mpc_send_bytes(conn, msg, len) != MPC_OK)
                report(peer, mpc_conn_status(conn), mpc_conn_errmsg(conn));
            mpc_free(msg);
            if (bad) {
                rc = EXIT_OTHER;
                break;
            }
        }
        mpc_conn_close(conn);
        if (rc != EXIT_OK)
            break;
    }
    mpc_listener_close(l);
    if (rc == EXIT_OK && refused)
        rc = EXIT_REFUSED;
    return rc;
}

int main(int argc, char **argv)
{
    struct cli c;
    memset(&c, 0, sizeof c);
    /* A peer that goes away must give an error line, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2)
        return usage_error("%s", "missing command (listen or send)");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("mpconn %s\n", mpc_version());
        return EXIT_OK;
    }
    if (strcmp(argv[1], "listen") != 0 && strcmp(argv[1], "send") != 0)
        return usage_error("unknown command '%s' (listen or send)", argv[1]);
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        }
    int rc = parse_args(&c, argc, argv);
    if (rc == EXIT_OK && c.use_tls)
        rc = check_tls_files(&c);
    if (rc == EXIT_OK)
        rc = strcmp(c.cmd, "listen") == 0 ? cmd_listen(&c) : cmd_send(&c);
    if (c.key)
        memset(c.key, 0, c.key_len);
    free(c.key);
    if (c.values)
        for (int i = 0; i < c.nmessages; i++)
            mpc_value_free(c.values[i]);
    free(c.values);
    free(c.from_stdin);
    free(c.messages);
    return rc;
}
