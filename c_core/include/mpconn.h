/*
 * mpconn.h - the one public header of libmpconn.
 *
 * libmpconn speaks the wire protocol of CPython's multiprocessing.connection:
 * length-prefixed messages (4-byte signed big-endian header, or -1 followed by
 * an 8-byte unsigned length) and the authkey HMAC challenge/response in both
 * dialects (legacy raw HMAC-MD5 as in CPython <= 3.11, and the "{sha256}"
 * prefixed form of CPython >= 3.12).  It moves bytes; values are a layer above
 * (see the "Values" section at the end).
 *
 * Layers, each usable alone:
 *   1. Framing (sans-I/O): mpc_frame_header(), mpc_frame_decoder.
 *   2. Handshake (sans-I/O): mpc_hs_*().
 *   3. Transport: mpc_listener, mpc_conn (blocking I/O with deadlines, or a
 *      non-blocking mode for event loops).
 *
 * Conventions used by every declaration below:
 *   - Every fallible call returns an mpc_status; MPC_OK (0) means success.
 *   - Creation calls, the sans-I/O calls and the value calls take an
 *     optional caller-owned mpc_error (may be NULL) that receives a readable
 *     message; on failure the out-handle is NULL.
 *   - Calls on an existing object record the last failure in that object:
 *     mpc_conn_errmsg() / mpc_conn_errno() stay valid until the next call on
 *     the same object.
 *   - Ownership phrases: "borrowed" = the library reads it during the call and
 *     never keeps it; "caller owns" = caller must release it with the named
 *     function; "library owns" = valid until the named event, never freed by
 *     the caller.
 *   - A failed call allocates nothing and changes no ownership.
 *   - Every destructor accepts NULL.
 *   - Durations are mpc_ms (milliseconds).  In calls: a negative value
 *     (MPC_FOREVER) waits without limit, 0 checks once without blocking.
 *     In mpc_options: 0 means "the documented default" for that field.
 *   - Thread rules: the library has no global mutable state.  One object may
 *     be used by one thread at a time; different objects may be used by
 *     different threads in parallel.
 *   - The library never calls exit() or abort() and never changes signal
 *     dispositions, and it never raises SIGPIPE: writes to sockets use
 *     MSG_NOSIGNAL; a write to a pipe whose reader is gone has SIGPIPE
 *     blocked around it (when the signal would kill the process) and
 *     returns EPIPE.
 */
#ifndef MPCONN_H
#define MPCONN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MPC_BUILDING) && defined(__GNUC__)
#define MPC_API __attribute__((visibility("default")))
#else
#define MPC_API
#endif

#define MPC_VERSION_MAJOR 0
#define MPC_VERSION_MINOR 1
#define MPC_VERSION_PATCH 0
#define MPC_VERSION_STRING "0.1.0"

/* The runtime version string, e.g. "0.1.0".  Library owns it (static). */
MPC_API const char *mpc_version(void);

/* ------------------------------------------------------------------------
 * Status codes.  One table generates the enum, mpc_strerror() and
 * mpc_status_name(); the bindings map the names to exceptions / Lua codes.
 *   X(NAME, value, "message")
 * ------------------------------------------------------------------------ */
#define MPC_STATUS_MAP(X)                                                     \
    X(OK, 0, "success")                                                       \
    X(EOF, 1, "end of file")                                                  \
    X(TIMEOUT, 2, "timed out")                                                \
    X(AUTH, 3, "authentication failed")                                       \
    X(PROTO, 4, "protocol error")                                             \
    X(TOOLONG, 5, "bad message length")                                       \
    X(TOOSHORT, 6, "buffer too short")                                        \
    X(CLOSED, 7, "handle is closed")                                          \
    X(OS, 8, "operating system error")                                        \
    X(INVAL, 9, "invalid argument")                                           \
    X(NOMEM, 10, "out of memory")                                             \
    X(TRUNCATED, 11, "got end of file during message")                        \
    X(AGAIN, 12, "more input needed")                                         \
    X(INTR, 13, "interrupted")                                                \
    X(NOTREADABLE, 14, "connection is write-only")                            \
    X(NOTWRITABLE, 15, "connection is read-only")                             \
    X(RESOLVE, 16, "cannot resolve address")                                  \
    X(VALUE, 17, "value error")                                               \
    X(TLS, 18, "TLS error")

typedef enum mpc_status {
#define MPC__STATUS_ENUM(name, value, msg) MPC_##name = value,
    MPC_STATUS_MAP(MPC__STATUS_ENUM)
#undef MPC__STATUS_ENUM
    MPC__STATUS_COUNT
} mpc_status;

/* A fixed English text for a status ("bad message length").  Library owns
 * it (static); never NULL, "unknown status" for values outside the table. */
MPC_API const char *mpc_strerror(mpc_status status);

/* The status's name without prefix ("TOOLONG").  Library owns it (static);
 * never NULL, "UNKNOWN" for values outside the table. */
MPC_API const char *mpc_status_name(mpc_status status);

/* Detailed error report for creation calls.  Caller owns the struct (stack
 * is fine); the library fills it on failure and leaves it alone on success.
 * message is always NUL-terminated; it never contains the authkey. */
#define MPC_ERRMSG_MAX 256
typedef struct mpc_error {
    mpc_status status;
    int sys_errno;                 /* errno captured at the failure site, or 0 */
    char message[MPC_ERRMSG_MAX];  /* e.g. "connect to 127.0.0.1:9: Connection refused" */
} mpc_error;

/* ------------------------------------------------------------------------
 * Durations
 * ------------------------------------------------------------------------ */
typedef int64_t mpc_ms;
#define MPC_FOREVER ((mpc_ms)-1)
#define MPC_NOWAIT ((mpc_ms)0)

/* Default handshake deadline used when mpc_options.handshake_timeout is 0. */
#define MPC_HANDSHAKE_DEFAULT_MS ((mpc_ms)30000)

/* "No maximum" for maxlength arguments. */
#define MPC_NO_LIMIT SIZE_MAX

/* ------------------------------------------------------------------------
 * Options.  Start from MPC_OPTIONS_INIT or mpc_options_init() (or zero the
 * struct); zero means the documented default for every field.  Fields are
 * only ever appended, and `size` tells the library how much of the struct
 * the caller knows, so a newer library never reads past an older caller's
 * struct (and a zeroed struct, size 0, means the fields up to and including
 * `nonblocking`).  Everything pointed to is borrowed: the library copies
 * what it keeps.
 * ------------------------------------------------------------------------ */
typedef enum mpc_dialect {
    /* Challenge with "{sha256}" + 40 random bytes (CPython >= 3.12).  Accept
     * every reply a 3.12+ challenger accepts: raw 16-byte MD5 (for <= 3.11
     * peers) and any "{name}" of the allowed set.  Answer both 20-byte legacy
     * challenges and "{name}" challenges.  The default. */
    MPC_DIALECT_MODERN = 0,
    /* Challenge with 20 random bytes and accept only raw HMAC-MD5, exactly as
     * CPython <= 3.11.  Answers like MODERN. */
    MPC_DIALECT_LEGACY = 1,
    /* MODERN, but refuse MD5 in both directions: raw or "{md5}" replies are
     * rejected, and 20-byte legacy challenges are not answered. */
    MPC_DIALECT_STRICT = 2
} mpc_dialect;

typedef struct mpc_options {
    /* sizeof(mpc_options) as the caller was compiled: set by
     * MPC_OPTIONS_INIT and mpc_options_init().  0 = the fields up to and
     * including `nonblocking` (the struct of 0.2, when `size` came in). */
    size_t size;
    /* The shared secret.  NULL = no handshake at all (CPython authkey=None);
     * non-NULL with authkey_len 0 = a real, empty key (CPython 3.13). */
    const void *authkey;
    size_t authkey_len;
    /* listen() backlog; 0 = 1 (CPython's default). */
    int backlog;
    mpc_dialect dialect;
    /* Digest named in our challenges in MODERN/STRICT dialect: one of "md5",
     * "sha256", "sha384", "sha3_256", "sha3_384"; NULL = "sha256". */
    const char *digest;
    /* Deadline for the whole handshake (both legs); 0 = 
     * MPC_HANDSHAKE_DEFAULT_MS, MPC_FOREVER = none (CPython behaviour). */
    mpc_ms handshake_timeout;
    /* Deadline for connect(); 0 = none beyond the operating system's. */
    mpc_ms connect_timeout;
    /* Deadline applied to each send/recv call on connections made with these
     * options; 0 = none.  Changeable later with mpc_conn_set_timeout(). */
    mpc_ms io_timeout;
    /* Largest message recv accepts (checked against the header before any
     * allocation); 0 = no limit (CPython behaviour). */
    uint64_t max_message_size;
    /* Mode bits for a Unix socket file created by listen (e.g. 0600);
     * 0 = leave it to the umask. */
    unsigned unix_mode;
    /* Called when a blocking system call is interrupted by a signal (EINTR).
     * Return 0 to retry (with the remaining deadline), non-zero to abort the
     * call with MPC_INTR.  NULL = always retry.  Used by the Python binding to
     * run signal handlers (Ctrl-C).  An abort before any byte of a message was
     * consumed keeps the stream in step; an abort in the middle of a message
     * marks the connection broken (later calls return MPC_PROTO). */
    int (*interrupt)(void *arg);
    void *interrupt_arg;
    /* How connections made with these options read.
     * 0 (default) = exact: a receive reads the header and then exactly the
     *   payload, never a byte past the message it returns, as CPython does.
     *   Every unread byte stays in the kernel, so the descriptor can be
     *   shared between processes, forked, handed over and watched with
     *   select()/poll() on its fileno like any CPython connection.
     * 1 = read-ahead: one read of up to 64 KiB serves many small messages
     *   (about 2x fewer system calls on streams of small messages).  Contract:
     *   this process is the only reader of the descriptor, and readiness is
     *   asked of mpc_poll()/mpc_wait() (which see the buffer), not of a raw
     *   select() on the descriptor.  Changeable with mpc_conn_set_read_ahead(). */
    int read_ahead;
    /* 1 = connections and listeners made with these options start in
     * non-blocking mode (see "Non-blocking mode" below): mpc_connect()
     * returns as soon as the connect has started, and mpc_flush() finishes
     * it and the handshake.  0 (default) = every call blocks up to its
     * deadline. */
    int nonblocking;
    /* Fields added after 0.2 go below; the library reads them only when
     * `size` covers them. */

    /* TLS for mpc_connect() and mpc_listen() (see "TLS" below); NULL =
     * plaintext, as CPython.  Borrowed: a listener keeps what it needs. */
    const struct mpc_tls_options *tls;
} mpc_options;

/* ------------------------------------------------------------------------
 * TLS (OpenSSL's libssl): TCP (or Unix socket) connect/accept, then the TLS
 * handshake (TLS 1.2 at least, 1.3 preferred), then the unchanged authkey
 * handshake and frames inside TLS.  A failure of TLS itself is MPC_TLS, its
 * message OpenSSL's reason ("certificate verify failed: ...",
 * "wrong version number" for a plaintext peer ...).  The TLS handshake runs
 * under handshake_timeout, before the authkey handshake's own.
 * ------------------------------------------------------------------------ */
typedef struct mpc_tls_options {
    /* PEM files: our certificate (chain) and its private key (NULL = in the
     * certificate file).  Required by a listener; a client gives them for
     * mutual TLS. */
    const char *certificate;
    const char *key;
    /* CAs to verify the peer with: a PEM file and/or a hashed directory.
     * Client: NULL for both = the system's default store.  Listener: given,
     * they make client certificates required and verified. */
    const char *cafile;
    const char *capath;
    /* Client: the name the server's certificate must carry (also sent as
     * SNI unless it is an IP address); NULL = the host of the address. */
    const char *server_name;
    /* Client: 1 = do not verify the server at all (explicit; never the
     * default). */
    int no_verify;
} mpc_tls_options;

/* An initialiser with every default and the size filled in:
 *     mpc_options o = MPC_OPTIONS_INIT;  */
#define MPC_OPTIONS_INIT {sizeof(mpc_options)}

/* Fills *opts with the defaults (zero) and sets opts->size. */
MPC_API void mpc_options_init(mpc_options *opts);

/* ------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------ */
/* Releases a buffer the library allocated for the caller (mpc_recv_bytes,
 * mpc_value_encode, ...).  Accepts NULL. */
MPC_API void mpc_free(void *ptr);

/* ========================================================================
 * 1. Framing (sans-I/O; provisional API).
 *
 * Wire: payload length 0..0x7FFFFFFF -> 4-byte big-endian signed header;
 * larger -> 4 bytes 0xFFFFFFFF (-1) then an 8-byte big-endian unsigned
 * length.  The decoder accepts the -1 form for any length.  Deviation from
 * CPython: any other negative 4-byte header is a protocol error (MPC_PROTO);
 * CPython returns b"" and the stream silently goes out of step.
 * ======================================================================== */
#define MPC_FRAME_HEADER_MAX 12
#define MPC_FRAME_SMALL_MAX ((uint64_t)0x7FFFFFFF)

/* Writes the header for a payload of len bytes into out and returns its size
 * (4 or 12).  Never fails. */
MPC_API size_t mpc_frame_header(uint64_t len, unsigned char out[MPC_FRAME_HEADER_MAX]);

/* Incremental header decoder.  Zero-initialise before use (or after an
 * error); no allocation, no I/O.  Fields are private. */
typedef struct mpc_frame_decoder {
    unsigned char buf[MPC_FRAME_HEADER_MAX];
    unsigned char have;
    unsigned char need;
} mpc_frame_decoder;

/* Feeds up to len bytes of header.  Consumes only header bytes: *consumed
 * is how many were taken (never more than the header).
 *   MPC_OK:    header complete, *length = payload length; the decoder is
 *              reset and ready for the next header.
 *   MPC_AGAIN: all input consumed, header not complete yet.
 *   MPC_PROTO: negative length other than -1 (the decoder is reset).
 * data is borrowed. */
MPC_API mpc_status mpc_frame_feed(mpc_frame_decoder *d, const void *data, size_t len,
                                  size_t *consumed, uint64_t *length);

/* ========================================================================
 * 2. Handshake (sans-I/O; provisional API).
 *
 * Payloads here are message payloads (the framing is separate).  Every
 * handshake message is read with a 256-byte maximum (MPC_HS_FRAME_MAX).
 * Randomness is injected: callers pass the random bytes (mpc_random() gives
 * bytes from OpenSSL's RAND_bytes), so tests replay transcripts exactly.
 * The deliver leg (challenger): send mpc_hs_challenge(); receive the reply;
 * mpc_hs_verify(); send "#WELCOME#" or "#FAILURE#".  The answer leg
 * (responder): receive the challenge; send mpc_hs_respond(); receive the
 * verdict; mpc_hs_check_welcome().  Listener: deliver then answer.  Client:
 * answer then deliver.  (mpc_connect and mpc_listener_accept write the
 * same frames in the same order but pipeline them: the client sends its
 * reply and its own challenge together before reading the verdict, and the
 * listener then sends its verdict and its reply together.)
 * ======================================================================== */
#define MPC_HS_FRAME_MAX 256
#define MPC_HS_CHALLENGE "#CHALLENGE#"
#define MPC_HS_WELCOME "#WELCOME#"
#define MPC_HS_FAILURE "#FAILURE#"
#define MPC_HS_LEGACY_RANDOM 20
#define MPC_HS_MODERN_RANDOM 40

/* Fills buf with len cryptographically secure random bytes (OpenSSL
 * RAND_bytes).  MPC_OK, or MPC_OS if the generator fails. */
MPC_API mpc_status mpc_random(void *buf, size_t len);

/* Builds the challenge payload "#CHALLENGE#" + M into out (cap bytes) and
 * sets *out_len.  LEGACY: M = the first 20 random bytes.  MODERN/STRICT:
 * M = "{digest}" + the first 40 random bytes (digest NULL = "sha256").
 * random (rand_len >= the number needed) is borrowed.
 * MPC_INVAL: unknown digest, too few random bytes, cap too small, or
 * STRICT with "md5".  err may be NULL. */
MPC_API mpc_status mpc_hs_challenge(mpc_dialect dialect, const char *digest,
                                    const void *random, size_t rand_len,
                                    unsigned char *out, size_t cap, size_t *out_len,
                                    mpc_error *err);

/* Computes the reply to a received challenge payload (with its
 * "#CHALLENGE#" prefix) into out (cap >= MPC_HS_FRAME_MAX is always enough).
 * 20-byte remainder: raw 16-byte HMAC-MD5 (refused in STRICT).  "{name}"
 * remainder with name in the allowed set: "{name}" + HMAC-name over the
 * whole remainder.
 *   MPC_AUTH: no "#CHALLENGE#" prefix, remainder shorter than 20 bytes,
 *             missing/unsupported digest prefix, or MD5 refused (STRICT);
 *             err->message names the reason in CPython's words.
 *   MPC_INVAL: cap too small.
 * key, challenge are borrowed.  err may be NULL. */
MPC_API mpc_status mpc_hs_respond(mpc_dialect dialect, const void *key, size_t key_len,
                                  const void *challenge, size_t challenge_len,
                                  unsigned char *out, size_t cap, size_t *out_len,
                                  mpc_error *err);

/* Verifies the reply to a challenge we sent (challenge = the payload we
 * sent, with its "#CHALLENGE#" prefix).  LEGACY: only the raw 16-byte
 * HMAC-MD5 of M is accepted.  MODERN: a 16- or 20-byte reply is checked as
 * raw HMAC-MD5 of M; otherwise a "{name}" prefix from the allowed set and
 * HMAC-name of M (M includes our own "{digest}" prefix).  STRICT: MODERN
 * without MD5.  Comparison is constant-time.
 *   MPC_OK: verified.  MPC_AUTH: rejected; err->message says why in
 *   CPython's words ("digest received was wrong", "expected 'sha256' of
 *   length 32 got 16", "unsupported message length, missing digest prefix,
 *   or unsupported digest: message=...").
 * All buffers borrowed.  err may be NULL. */
MPC_API mpc_status mpc_hs_verify(mpc_dialect dialect, const void *key, size_t key_len,
                                 const void *challenge, size_t challenge_len,
                                 const void *reply, size_t reply_len, mpc_error *err);

/* MPC_OK if the payload is exactly "#WELCOME#", else MPC_AUTH with
 * "digest sent was rejected".  err may be NULL. */
MPC_API mpc_status mpc_hs_check_welcome(const void *msg, size_t len, mpc_error *err);

/* ========================================================================
 * 3. Transport.
 *
 * Addresses are strings:
 *   "host:port"     TCP; host is a name or IPv4 literal ("" = all IPv4
 *                   interfaces); names resolve IPv4 first, then IPv6.
 *   "[v6]:port"     TCP over IPv6 ("[::1]:0", "[::]:4000").
 *   "/path", "./p"  Unix socket path (anything with a '/' or without ':').
 *   "@name"         Linux abstract socket name (no file).
 * Port 0 binds an ephemeral port; mpc_listener_address() gives the real one.
 * TCP sockets get TCP_NODELAY.  All descriptors are close-on-exec.
 * ======================================================================== */
typedef struct mpc_listener mpc_listener;
typedef struct mpc_conn mpc_conn;

/* --- Listener --- */

/* Creates a listening socket (SO_REUSEADDR for TCP; binding an existing Unix
 * path fails with EADDRINUSE as in CPython).  opts may be NULL (defaults);
 * its authkey, dialect, timeouts and limits apply to accepted connections.
 * On success *out is the listener (caller owns; release with
 * mpc_listener_close()).  MPC_INVAL (bad address), MPC_RESOLVE, MPC_OS,
 * MPC_NOMEM.  Does not block. */
MPC_API mpc_status mpc_listen(const char *address, const mpc_options *opts,
                              mpc_listener **out, mpc_error *err);

/* mpc_listen() for an address of address_len bytes: an abstract name
 * ("@...") may then contain NUL bytes, as Linux allows; anywhere else a NUL
 * is MPC_INVAL.  (mpc_listener_address() shows such a name up to its first
 * NUL.) */
MPC_API mpc_status mpc_listen_n(const char *address, size_t address_len,
                                const mpc_options *opts, mpc_listener **out, mpc_error *err);

/* Waits up to timeout for a client, accepts it, and (with an authkey) runs
 * deliver then answer under opts.handshake_timeout.  On success *out is the
 * connection (caller owns; release with mpc_conn_close()).  A failed
 * handshake closes that connection and returns MPC_AUTH / MPC_PROTO /
 * MPC_TOOLONG / MPC_TIMEOUT / MPC_EOF; the listener stays usable.
 * MPC_TIMEOUT (no client in time), MPC_CLOSED, MPC_OS, MPC_INTR.
 * Blocks.  err may be NULL; the listener's errmsg is set too. */
MPC_API mpc_status mpc_listener_accept(mpc_listener *l, mpc_ms timeout, mpc_conn **out,
                                       mpc_error *err);

/* The bound address in the string syntax above, with the real port
 * ("127.0.0.1:41234", "[::1]:41234", "/tmp/x.sock", "@name").  Library owns
 * it until mpc_listener_close(). */
MPC_API const char *mpc_listener_address(const mpc_listener *l);

/* The address of the last client accepted ("host:port", "[v6]:port"; ""
 * for Unix sockets and before the first), set before its handshake: after
 * a failed one it says who failed.  Library owns it until the next accept
 * or mpc_listener_close(). */
MPC_API const char *mpc_listener_last_peer(const mpc_listener *l);

/* The address family: "AF_INET", "AF_INET6" or "AF_UNIX".  Static. */
MPC_API const char *mpc_listener_family(const mpc_listener *l);

/* The listening socket's descriptor (library owns it). */
MPC_API int mpc_listener_fileno(const mpc_listener *l);

/* Last failure on this listener; valid until the next call on it. */
MPC_API const char *mpc_listener_errmsg(const mpc_listener *l);

/* Closes the socket, unlinks a Unix socket file it created (not abstract
 * names; only in the process that created it, so a forked child's close
 * leaves the parent's socket reachable), frees the listener.  Accepts NULL.  Must not be called while
 * another thread is inside a call on l: wake that call with
 * mpc_listener_wake() and close once it has returned. */
MPC_API void mpc_listener_close(mpc_listener *l);

/* Makes an mpc_listener_accept() that is waiting for a client in another
 * thread of this process return MPC_CLOSED ("listener is closed"), and every
 * later accept too, until the listener is closed.  The one listener call
 * that is safe from another thread.  It changes nothing that another process
 * sharing the socket can see (no shutdown(2); the socket stays listening).
 * Does not block. */
MPC_API void mpc_listener_wake(mpc_listener *l);

/* --- Creating connections --- */

/* Connects to address (connect_timeout), then with an authkey runs answer
 * then deliver (handshake_timeout).  opts may be NULL.  On success *out is
 * the connection (caller owns; mpc_conn_close()).  MPC_OS (e.g. ECONNREFUSED
 * with its text), MPC_RESOLVE, MPC_TIMEOUT, MPC_AUTH, MPC_PROTO,
 * MPC_TOOLONG, MPC_EOF, MPC_INVAL, MPC_NOMEM, MPC_INTR.  Blocks. */
MPC_API mpc_status mpc_connect(const char *address, const mpc_options *opts,
                               mpc_conn **out, mpc_error *err);
/* mpc_connect() for an address of address_len bytes (see mpc_listen_n()). */
MPC_API mpc_status mpc_connect_n(const char *address, size_t address_len,
                                 const mpc_options *opts, mpc_conn **out, mpc_error *err);

/* Makes a connected pair.  duplex != 0: a socketpair, both ends readable and
 * writable.  duplex == 0: a pipe; *a is the reader, *b the writer.  opts may
 * be NULL (its io_timeout, max_message_size and interrupt apply; no
 * handshake).  Caller owns both; on failure both are NULL. */
MPC_API mpc_status mpc_pipe(int duplex, const mpc_options *opts, mpc_conn **a, mpc_conn **b,
                            mpc_error *err);

/* Wraps an existing connected descriptor (socket or pipe end) and takes
 * ownership of it (it is closed by mpc_conn_close(), and on success only).
 * MPC_INVAL for fd < 0 or both flags zero.  No handshake; see
 * mpc_conn_deliver_challenge() / mpc_conn_answer_challenge(). */
MPC_API mpc_status mpc_conn_from_fd(int fd, int readable, int writable, const mpc_options *opts,
                                    mpc_conn **out, mpc_error *err);

/* --- Handshake legs on an existing connection (for callers that accept or
 * connect raw sockets themselves).  key is borrowed; key NULL is MPC_INVAL.
 * opts (may be NULL) supplies dialect, digest and handshake_timeout. --- */
MPC_API mpc_status mpc_conn_deliver_challenge(mpc_conn *c, const void *key, size_t key_len,
                                              const mpc_options *opts);
MPC_API mpc_status mpc_conn_answer_challenge(mpc_conn *c, const void *key, size_t key_len,
                                             const mpc_options *opts);

/* --- Sending --- */

/* Sends one message (header and payload with one writev/sendmsg; partial
 * writes are continued).  buf is borrowed (not copied).  MPC_CLOSED,
 * MPC_NOTWRITABLE, MPC_TIMEOUT (io_timeout), MPC_OS (EPIPE, ECONNRESET ...),
 * MPC_INTR.  A failure after some bytes were written marks the connection
 * broken.  Blocks. */
MPC_API mpc_status mpc_send_bytes(mpc_conn *c, const void *buf, size_t len);

/* One message of a batch. */
typedef struct mpc_buf {
    const void *data;
    size_t len;
} mpc_buf;

/* Sends n messages, each framed on its own, with as few system calls as the
 * kernel allows (one writev per IOV_MAX/2 messages).  Byte-identical on the
 * wire to n calls of mpc_send_bytes().  bufs borrowed.  Same statuses. */
MPC_API mpc_status mpc_send_many(mpc_conn *c, const mpc_buf *bufs, size_t n);

/* --- Receiving --- */

/* Receives one whole message.  The declared length is checked against
 * maxlength (MPC_NO_LIMIT = none) and the connection's max_message_size
 * before anything is allocated (a length above PTRDIFF_MAX, which no buffer
 * can hold, is always too long); a longer message gives MPC_TOOLONG, leaves
 * the payload unread and, as CPython does, makes the connection no longer
 * readable (a read-only connection is closed).  Memory is never allocated
 * for more than the bytes that actually arrived plus a bounded step, so a
 * hostile header cannot make the library reserve its claimed size.
 * On success *out (caller owns; release with mpc_free(); non-NULL even for
 * an empty message) and *len.  MPC_EOF (peer closed before a header byte),
 * MPC_TRUNCATED (EOF inside a message), MPC_PROTO (bad header), MPC_TOOLONG,
 * MPC_CLOSED, MPC_NOTREADABLE, MPC_TIMEOUT, MPC_OS, MPC_NOMEM, MPC_INTR.
 * Blocks (io_timeout). */
MPC_API mpc_status mpc_recv_bytes(mpc_conn *c, size_t maxlength, void **out, size_t *len);

/* Receives one message into buf (cap bytes, borrowed) and sets *len.  If the
 * message is longer than cap: MPC_TOOSHORT, *len = the message length, and
 * the message stays pending, unconsumed: the next recv call (of any kind)
 * returns it, so the stream stays in step and nothing is lost.  Otherwise
 * the statuses of mpc_recv_bytes(). */
MPC_API mpc_status mpc_recv_bytes_into(mpc_conn *c, void *buf, size_t cap, size_t *len);

/* Receives one whole message into memory the caller allocates: the same
 * checks, statuses and allocation policy as mpc_recv_bytes() (which is this
 * call with the library's own allocator), for bindings whose result must be
 * their own object (a Python bytes, say) without a second copy.
 *
 * alloc(arg, old, old_size, new_size):
 *   - old == NULL: returns new_size bytes (new_size may be 0: a non-NULL
 *     pointer all the same), or NULL on failure;
 *   - old != NULL, new_size > old_size: grows the block to new_size bytes,
 *     keeping its first old_size bytes; returns the block (moved or not), or
 *     NULL on failure, when old is still the caller's and is then freed by
 *     the next call;
 *   - old != NULL, new_size == 0: frees old (the return value is ignored).
 * The library grows a block only as bytes arrive (never more than a bounded
 * step beyond them, mpc_recv_alloc_step()), so a hostile header cannot make
 * it allocate its claimed size.  alloc is called with nothing of the
 * library locked, from the calling thread, only during this call: it may
 * take a language's global lock (the GIL) and release it again before it
 * returns, and it may call the const getters of c (mpc_conn_buffered(), to
 * know whether the rest of the block is already in the read buffer) but no
 * other call on c.
 *
 * On MPC_OK, *out is the block (the caller owns it, as alloc made it) and
 * *len the message length; the block is exactly *len bytes long as far as
 * alloc knows it (the last size passed).  On any failure *out is NULL,
 * *len 0 and everything alloc made is freed; if alloc failed the status is
 * MPC_NOMEM: when nothing of the payload had been taken yet the message
 * stays pending (the next receive returns it), otherwise it is abandoned
 * and the connection is broken, as for a failure in mid-message.  The
 * other statuses are those of mpc_recv_bytes().  Blocks (io_timeout). */
typedef void *(*mpc_alloc_fn)(void *arg, void *old, size_t old_size, size_t new_size);
MPC_API mpc_status mpc_recv_with(mpc_conn *c, size_t maxlength, mpc_alloc_fn alloc, void *arg,
                                 void **out, size_t *len);

/* Sets *ready to 1 if a message or end of file is pending (buffered data
 * counts), else 0, waiting up to timeout.  Never consumes data.  MPC_CLOSED,
 * MPC_NOTREADABLE, MPC_OS, MPC_INTR. */
MPC_API mpc_status mpc_poll(mpc_conn *c, mpc_ms timeout, int *ready);

/* Waits until at least one of n connections is ready as for mpc_poll() (or
 * timeout passes), then sets ready[i] to 1 or 0 for each and *nready to the
 * count.  conns and ready are borrowed arrays of n; NULL entries are
 * skipped.  MPC_OK (also when none became ready), MPC_INVAL, MPC_OS,
 * MPC_INTR. */
MPC_API mpc_status mpc_wait(mpc_conn *const *conns, size_t n, mpc_ms timeout, int *ready,
                            size_t *nready);

/* --- Properties --- */
MPC_API int mpc_conn_fileno(const mpc_conn *c);   /* -1 once closed */
MPC_API int mpc_conn_readable(const mpc_conn *c); /* 0/1 */
MPC_API int mpc_conn_writable(const mpc_conn *c); /* 0/1 */
/* Bytes already read from the socket and not yet returned. */
MPC_API size_t mpc_conn_buffered(const mpc_conn *c);
/* The peer's address for TCP ("10.0.0.2:5555", "[::1]:5555"), "" for Unix
 * sockets and pipes.  Library owns it until mpc_conn_close(). */
MPC_API const char *mpc_conn_peer(const mpc_conn *c);
/* Per-call deadline for send/recv (0 or MPC_FOREVER = none). */
MPC_API void mpc_conn_set_timeout(mpc_conn *c, mpc_ms timeout);
/* Switches between exact reads (on = 0) and read-ahead (on != 0); see
 * mpc_options.read_ahead.  Switching to exact reads while bytes are
 * buffered (mpc_conn_buffered() > 0) or a message is partly received is
 * MPC_INVAL, as those bytes could no longer be left to the kernel. */
MPC_API mpc_status mpc_conn_set_read_ahead(mpc_conn *c, int on);
/* 1 when the connection reads ahead, else 0. */
MPC_API int mpc_conn_read_ahead(const mpc_conn *c);
/* Replaces the interrupt hook (see mpc_options.interrupt). */
MPC_API void mpc_conn_set_interrupt(mpc_conn *c, int (*fn)(void *), void *arg);
MPC_API void mpc_listener_set_interrupt(mpc_listener *l, int (*fn)(void *), void *arg);

/* Last failure on this connection: status, message ("got end of file during
 * message", "recv: Connection reset by peer"), saved errno.  The message is
 * library-owned, valid until the next call on c; never contains the key. */
MPC_API mpc_status mpc_conn_status(const mpc_conn *c);
MPC_API const char *mpc_conn_errmsg(const mpc_conn *c);
MPC_API int mpc_conn_errno(const mpc_conn *c);

/* Frees the connection and returns its descriptor without closing it
 * (caller owns the fd).  Buffered unread bytes are lost.  -1 for NULL. */
MPC_API int mpc_conn_detach(mpc_conn *c);

/* Closes the descriptor and frees the connection.  Accepts NULL.  Never
 * calls shutdown(2): another process sharing the socket (a forked child, a
 * process it was handed to) keeps it working.  Must not be called while
 * another thread is inside a call on c. */
MPC_API void mpc_conn_close(mpc_conn *c);

/* Makes the receives and polls of c that wait wakeable by mpc_conn_wake()
 * (on != 0), or not (on = 0, the default).  The first call with on != 0
 * creates an eventfd (kept until close; MPC_OS if none can be made).
 * Costs one poll(2) before each read that may wait; made for bindings that
 * know when another thread may close the connection.  Sends and connects
 * are not woken. */
MPC_API mpc_status mpc_conn_set_wakeable(mpc_conn *c, int on);

/* Makes a wakeable receive or poll waiting on c in another thread of this
 * process return MPC_CLOSED, and every later wakeable wait on c, until c is
 * closed.  Safe from another thread once mpc_conn_set_wakeable(c, 1) has
 * returned; changes nothing another process sharing the descriptor can see.
 * A message the woken call had received only in part is lost (the
 * connection is broken).  Does not block. */
MPC_API void mpc_conn_wake(mpc_conn *c);

/* shutdown(2) of a socket connection in both directions: a call blocked on c
 * in another thread returns (end of file or an error), and so do the reads
 * of every other process that shares the socket, whose peer also sees end
 * of file.  The one connection call that is safe from another thread; c
 * stays allocated (close it once the other thread's call has returned).
 * MPC_OK, MPC_INVAL (NULL, or not a socket: pipes cannot be shut down),
 * MPC_OS. */
MPC_API mpc_status mpc_conn_shutdown(mpc_conn *c);

/* ------------------------------------------------------------------------
 * Non-blocking mode (for event loops: asyncio, libuv, cqueues, epoll ...)
 *
 * A connection or listener in non-blocking mode never waits.  A call that
 * would wait returns MPC_AGAIN having lost nothing, and mpc_conn_wants()
 * says what to wait for on mpc_conn_fileno() before calling again.
 *   - Receives (every kind, values too) return a whole message or
 *     MPC_AGAIN.  A message that arrives in pieces is kept inside the
 *     connection (memory grows only as its bytes arrive, as for blocking
 *     receives) and the next receive call of any kind continues it.  The
 *     block (up to 4 MiB) is kept for the next message while messages
 *     keep coming, and given back once a receive finds no next header,
 *     on a switch to blocking mode and at close: an idle connection holds
 *     no large block.
 *     Before waiting on the descriptor, ask mpc_conn_pending(): a message
 *     already wholly read (read-ahead) makes no descriptor readable.
 *   - No call moves more than about 1 MiB: past that it returns MPC_AGAIN
 *     with the descriptor still ready, so one large message arriving (or
 *     queued output leaving) fast does not hold an event loop.
 *   - Sends (mpc_send_bytes(), mpc_send_many(), values): MPC_OK means the
 *     message (all n of a batch) was accepted whole: written, or its
 *     unwritten rest copied inside the connection, so the caller's buffer
 *     may be reused at once.  MPC_AGAIN means nothing of it was accepted,
 *     because output of an earlier send is still queued: wait for
 *     writability and call again.  Queued output is written by
 *     mpc_flush() and by every later call on the connection.
 *   - mpc_connect() with opts->nonblocking returns as soon as the connect
 *     has started (name resolution still blocks; a TCP name is tried at
 *     its first address only, IPv4 first).  mpc_listener_accept() on a
 *     non-blocking listener returns MPC_AGAIN when no client is waiting,
 *     else at once a non-blocking connection.  Either connection finishes
 *     its connect and handshake in mpc_flush() (and any other call on it).
 *   - The handshake legs (mpc_conn_deliver_challenge() ...) return
 *     MPC_AGAIN and go on where they stopped when called again or through
 *     mpc_flush(); later calls' arguments are then ignored.
 *   - Deadlines (io_timeout, handshake_timeout, connect_timeout) are the
 *     event loop's business: no call waits, so none times out.
 *     mpc_poll() never waits (timeout is treated as 0); mpc_wait() does
 *     wait, as it is asked to.
 *   - A failure is as in blocking mode; MPC_AGAIN records nothing that
 *     breaks the connection.
 * ------------------------------------------------------------------------ */

/* What a call that returned MPC_AGAIN waits for (bits). */
#define MPC_WANT_READ 1
#define MPC_WANT_WRITE 2

/* Switches c between blocking (blocking != 0, the default) and non-blocking
 * mode; sets or clears O_NONBLOCK on the descriptor (which a process that
 * shares it sees too).  Switching back to blocking while anything is in
 * progress (a connect, a handshake, queued output, a message received in
 * part) is MPC_INVAL: finish it first.  MPC_OK, MPC_INVAL, MPC_OS. */
MPC_API mpc_status mpc_conn_set_blocking(mpc_conn *c, int blocking);
/* 1 in blocking mode, 0 in non-blocking mode (and for NULL). */
MPC_API int mpc_conn_blocking(const mpc_conn *c);

/* What c waits for: MPC_WANT_READ, MPC_WANT_WRITE, both, or 0 when
 * nothing is in progress.  After a receive returned MPC_AGAIN it has
 * MPC_WANT_READ (and MPC_WANT_WRITE while output is queued, which the next
 * call writes); after a send or mpc_flush() returned MPC_AGAIN it names
 * what the connect, the handshake or the queued output waits for. */
MPC_API int mpc_conn_wants(const mpc_conn *c);

/* 1 when the next receive will not wait: a whole message (or a header that
 * is an error at once) is already buffered in the connection.  Never makes a
 * system call. */
MPC_API int mpc_conn_pending(const mpc_conn *c);

/* Finishes what is in progress: a connect, a handshake, queued output.
 * MPC_OK when nothing is left, MPC_AGAIN when it must wait
 * (mpc_conn_wants()), else the failure (MPC_OS with ECONNREFUSED, MPC_AUTH,
 * MPC_EOF ...; after a failed connect or handshake only mpc_conn_close()
 * is useful).  In blocking mode it returns MPC_OK at once. */
MPC_API mpc_status mpc_flush(mpc_conn *c);

/* The listener's twin of mpc_conn_set_blocking(): in non-blocking mode
 * mpc_listener_accept() never waits (its timeout is ignored) and the
 * connections it returns are non-blocking.  MPC_OK, MPC_INVAL. */
MPC_API mpc_status mpc_listener_set_blocking(mpc_listener *l, int blocking);

/* ========================================================================
 * 3a. Binding plumbing (PROVISIONAL: may change or leave the public header
 *     before 1.0).
 *
 * Steps of a receive, for language bindings that need them; applications
 * use mpc_recv_bytes(), mpc_recv_bytes_into() or mpc_recv_with().
 * ======================================================================== */

/* Zero-copy receive of a message that is already complete in the
 * connection's read buffer (small messages usually are: one read brings
 * many).  mpc_recv_peek() sets *data to the payload inside the library's
 * buffer and *len to its length, and consumes nothing; mpc_recv_consume()
 * then takes that message off the stream.  Between the two, make no other
 * call on c; the view is borrowed and is valid until then.  Copy it, then
 * consume: if the copy fails, the message is still there.
 * mpc_recv_peek() returns MPC_AGAIN when the next message is not wholly
 * buffered, is longer than maxlength or the connection's max_message_size,
 * or the connection is not in a state to receive; no error is recorded, and
 * a normal receive call takes it from there (and reports what needs
 * reporting).  mpc_recv_consume() returns MPC_AGAIN if no whole message is
 * buffered.  Neither blocks or makes a system call; MPC_INVAL for NULL. */
MPC_API mpc_status mpc_recv_peek(mpc_conn *c, size_t maxlength, const void **data, size_t *len);
MPC_API mpc_status mpc_recv_consume(mpc_conn *c);

/* Two-step receive, for bindings that allocate the destination themselves
 * (e.g. a Python bytes object):
 *   mpc_recv_begin() reads the next header (or returns the one already
 *   pending) and checks it against maxlength as mpc_recv_bytes() does; on
 *   MPC_OK *len is the payload length and the message is pending.
 *   mpc_recv_payload() then reads the next n bytes of the pending payload
 *   (n <= what remains) into dst; when the last byte is read the message is
 *   complete.  Call it in steps for large messages.
 *   mpc_recv_alloc_step() is the library's allocation policy: given the
 *   declared length and the bytes already received, how large the
 *   destination should be now (never more than a bounded step beyond what
 *   arrived). */
MPC_API mpc_status mpc_recv_begin(mpc_conn *c, size_t maxlength, uint64_t *len);
MPC_API mpc_status mpc_recv_payload(mpc_conn *c, void *dst, size_t n);
MPC_API size_t mpc_recv_alloc_step(uint64_t declared, size_t received);

/* Abandons a message that mpc_recv_begin()/mpc_recv_payload() delivered
 * only in part (a caller that stops in the middle, e.g. on an interrupt):
 * the rest cannot be found in the stream any more, so the connection is
 * marked broken and later receives fail with MPC_PROTO saying why.  Does
 * nothing when no message is partly received. */
MPC_API void mpc_recv_abandon(mpc_conn *c);

/* ========================================================================
 * 4. Values (a safe subset of pickle; pure, no I/O).
 *
 * An mpc_value is a tree of plain Python values: None, bool, int (int64, or
 * BIGINT holding the decimal text of an int beyond 64 bits), float, str
 * (UTF-8, may contain NUL), bytes, bytearray, list, tuple, dict (insertion
 * order kept), set, frozenset.
 *
 * Ownership: every mpc_value_new_*() result and every decoded or parsed
 * tree is "caller owns; release with mpc_value_free()".  Containers own their
 * children: adding an item to a container moves the caller's ownership of
 * the item into the container (on success only).  mpc_value_item() and the
 * other accessors return borrowed pointers, valid while the root is alive
 * and unmodified.  Lists and dicts can be modified anywhere and may contain
 * themselves (l.append(l), directly or through other containers), as in
 * Python; such a value is freed with its last owner, repr prints "[...]",
 * "{...}", "(...)" as Python does, and a walk through a cycle deeper than
 * MPC_VALUE_DEPTH_MAX fails with MPC_VALUE (equality answers 0) where Python
 * raises RecursionError.  A tuple can be modified while no hash depends on
 * it, a set while it is not inside another container.  A received pickle may share
 * one sub-object between several places (the memo); the tree then shares it
 * too, which is invisible except that the encoder writes it once, as CPython
 * does.
 *
 * Equality and hashing follow Python: 1 == 1.0 == True, b'a' ==
 * bytearray(b'a'), a set equals a frozenset with the same elements.  Dict
 * keys and set elements must be hashable (None, bool, int, float, str,
 * bytes, frozenset, and tuples of hashable values); an equal key replaces
 * the value and keeps the first key, an equal set element is not added.
 *
 * Thread rules: a tree may be read by several threads at once only after the
 * first mpc_value_equal()/dict or set lookup on it has finished (lookups
 * cache hashes in the nodes); modify it from one thread at a time.
 * ======================================================================== */
typedef struct mpc_value mpc_value;

typedef enum mpc_vkind {
    MPC_V_NONE = 0,
    MPC_V_BOOL = 1,
    MPC_V_INT = 2,       /* fits in int64 */
    MPC_V_BIGINT = 3,    /* outside int64; decimal text via mpc_value_str() */
    MPC_V_FLOAT = 4,
    MPC_V_STR = 5,       /* UTF-8 (encoded lone surrogates allowed, as CPython's
                          * 'surrogatepass') */
    MPC_V_BYTES = 6,
    MPC_V_BYTEARRAY = 7,
    MPC_V_LIST = 8,
    MPC_V_TUPLE = 9,
    MPC_V_DICT = 10,
    MPC_V_SET = 11,
    MPC_V_FROZENSET = 12
} mpc_vkind;

/* Default and hard limit of nesting depth (a scalar has depth 1, [1] has 2).
 * Trees deeper than MPC_VALUE_DEPTH_MAX cannot be built, so every
 * recursive walk of the library (encode, repr, compare, free) is bounded:
 * 2000 levels stay well inside an 8 MiB thread stack even with
 * AddressSanitizer's larger frames.  CPython itself cannot pickle much
 * deeper than its recursion limit (1000). */
#define MPC_VALUE_DEPTH_DEFAULT 1000
#define MPC_VALUE_DEPTH_MAX 2000

/* --- Constructors.  Each returns a new value (caller owns; release with
 * mpc_value_free()), or NULL on out of memory or invalid input as noted. --- */
MPC_API mpc_value *mpc_value_new_none(void);
MPC_API mpc_value *mpc_value_new_bool(int b);   /* any non-zero is True */
MPC_API mpc_value *mpc_value_new_int(int64_t i);
/* An int from decimal text "[-+]digits" (borrowed; '_' not allowed).  The
 * kind is MPC_V_INT when it fits in int64, else MPC_V_BIGINT.  NULL for
 * malformed text or more than 4300 digits. */
MPC_API mpc_value *mpc_value_new_bigint(const char *text, size_t len);
MPC_API mpc_value *mpc_value_new_float(double f);
/* A str from UTF-8 (copied).  NULL if utf8 is not valid UTF-8. */
MPC_API mpc_value *mpc_value_new_str(const char *utf8, size_t len);
MPC_API mpc_value *mpc_value_new_bytes(const void *data, size_t len);      /* copied */
MPC_API mpc_value *mpc_value_new_bytearray(const void *data, size_t len);  /* copied */
/* Empty containers, filled with mpc_value_append() (list, tuple),
 * mpc_value_set_add() (set, frozenset) and mpc_value_dict_set() (dict). */
MPC_API mpc_value *mpc_value_new_list(void);
MPC_API mpc_value *mpc_value_new_tuple(void);
MPC_API mpc_value *mpc_value_new_dict(void);
MPC_API mpc_value *mpc_value_new_set(void);
MPC_API mpc_value *mpc_value_new_frozenset(void);

/* Appends item to a list or tuple.  On MPC_OK the container owns item; on
 * failure the caller still owns it.  item may be seq itself or contain it
 * (pass a share: mpc_value_share()); an insertion that may close a cycle
 * costs a walk of the containers it reaches that are not yet on a cycle.
 * MPC_INVAL (NULL argument, seq is not a list/tuple, a tuple that is hashed
 * or item == a tuple seq), MPC_VALUE
 * (depth beyond MPC_VALUE_DEPTH_MAX), MPC_NOMEM. */
MPC_API mpc_status mpc_value_append(mpc_value *seq, mpc_value *item);

/* Adds item to a set or frozenset.  On MPC_OK the set owns item (if an equal
 * element was already present, item is released and the set is unchanged).
 * On failure the caller still owns item.  MPC_INVAL as mpc_value_append(),
 * MPC_VALUE (item unhashable, depth), MPC_NOMEM. */
MPC_API mpc_status mpc_value_set_add(mpc_value *set, mpc_value *item);

/* Sets d[key] = val.  On MPC_OK the dict owns both (if an equal key was
 * present, its value is replaced and released, the old key is kept in its
 * position and the new key is released).  On failure the caller still owns
 * both.  MPC_INVAL as mpc_value_append(), MPC_VALUE (key unhashable,
 * depth), MPC_NOMEM. */
MPC_API mpc_status mpc_value_dict_set(mpc_value *d, mpc_value *key, mpc_value *val);

/* Releases a value and everything it owns.  Accepts NULL.  Never call it on
 * a borrowed pointer (an item of a container). */
MPC_API void mpc_value_free(mpc_value *v);

/* Gives v one more owner and returns it (NULL for NULL): one node may then
 * be put into several containers, as a pickle's memo shares one object
 * (the encoder writes it once, then refers to it).  Every owner releases
 * its share as usual: with mpc_value_free(), or by adding it to a
 * container.  v may be a borrowed pointer (an item of a container). */
MPC_API mpc_value *mpc_value_share(mpc_value *v);

/* --- Accessors.  v is borrowed; NULL v gives the zero answer. --- */
MPC_API mpc_vkind mpc_value_kind(const mpc_value *v);   /* MPC_V_NONE for NULL */
/* The Python type name of a kind ("NoneType", "bool", "int", "float",
 * "str", "bytes", "bytearray", "list", "tuple", "dict", "set",
 * "frozenset"; "int" for BIGINT).  Library owns it (static). */
MPC_API const char *mpc_vkind_name(mpc_vkind kind);
/* BOOL: 0/1.  INT: the value.  Other kinds: 0. */
MPC_API int64_t mpc_value_int(const mpc_value *v);
/* FLOAT: the value.  INT/BOOL: converted.  Other kinds: 0.0. */
MPC_API double mpc_value_float(const mpc_value *v);
/* STR (UTF-8), BYTES, BYTEARRAY: the data; BIGINT: its decimal text.
 * Sets *len (if len is not NULL) to the size in bytes.  Library owns it
 * (valid while v lives); always NUL-terminated, but may contain NULs.
 * Other kinds: NULL and *len = 0. */
MPC_API const char *mpc_value_str(const mpc_value *v, size_t *len);
/* Containers: number of elements (dict: pairs).  STR/BYTES/BYTEARRAY/BIGINT:
 * size in bytes.  Other kinds: 0. */
MPC_API size_t mpc_value_len(const mpc_value *v);
/* Element i of a list, tuple, set or frozenset (sets in insertion order).
 * Borrowed.  NULL if out of range or another kind. */
MPC_API mpc_value *mpc_value_item(const mpc_value *v, size_t i);
/* Key / value of pair i of a dict, in insertion order.  Borrowed, NULL if out
 * of range or not a dict. */
MPC_API mpc_value *mpc_value_dict_key(const mpc_value *v, size_t i);
MPC_API mpc_value *mpc_value_dict_val(const mpc_value *v, size_t i);
/* d[key] by Python equality, or NULL (absent, not a dict, unhashable key).
 * Borrowed.  mpc_value_dict_get_str() looks up a str key given as UTF-8. */
MPC_API mpc_value *mpc_value_dict_get(const mpc_value *d, const mpc_value *key);
MPC_API mpc_value *mpc_value_dict_get_str(const mpc_value *d, const char *key, size_t len);
/* 1 if a == b in Python, else 0 (NaN != NaN unless the same node). */
MPC_API int mpc_value_equal(const mpc_value *a, const mpc_value *b);

/* --- Pickle --- */

/* How protocol 0-2 "str" strings of Python 2 (opcodes STRING, BINSTRING,
 * SHORT_BINSTRING) are decoded.  Python 3 writes none of them. */
typedef enum mpc_py2str {
    /* As Python 3's pickle.loads() default (encoding='ASCII'): a str; a
     * non-ASCII byte is an error (MPC_VALUE). */
    MPC_PY2STR_ASCII = 0,
    /* As encoding='bytes': bytes. */
    MPC_PY2STR_BYTES = 1,
    /* As encoding='latin1': a str, each byte one code point. */
    MPC_PY2STR_LATIN1 = 2
} mpc_py2str;

/* Decoder options; zero-initialise, zero means the documented default.
 * Fields are only ever appended. */
typedef struct mpc_decode_options {
    /* Deepest nesting accepted; 0 = MPC_VALUE_DEPTH_DEFAULT, larger than
     * MPC_VALUE_DEPTH_MAX = MPC_VALUE_DEPTH_MAX. */
    unsigned max_depth;
    mpc_py2str py2_str;
    /* Most decimal digits of an int; 0 = 4300 (CPython 3.11+'s default
     * int/str conversion limit). */
    unsigned max_int_digits;
} mpc_decode_options;

/* Decodes one pickle (protocols 0-5, as CPython 2.7 to 3.14 write them) into
 * a value tree.  pickle is borrowed.  opts may be NULL (defaults).  On MPC_OK
 * *out is the value (caller owns; release with mpc_value_free()); bytes after
 * the STOP opcode are ignored, as in CPython.
 *
 * Safety: nothing is ever executed or imported.  The only globals accepted
 * are the constructors CPython itself writes for these kinds, with exactly
 * CPython's argument shapes: builtins set([...]), frozenset([...]),
 * bytearray(), bytearray(bytes), bytearray(u'..', 'latin-1') (Python 2),
 * bytes(), and _codecs.encode(u'..', 'latin1'); Python 2's __builtin__
 * names them below protocol 3, as CPython maps it.  Any other
 * GLOBAL/STACK_GLOBAL target, REDUCE of anything else, and the opcodes
 * BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX, PERSID, BINPERSID, EXT1/2/4,
 * NEXT_BUFFER and READONLY_BUFFER are refused.  A value is never read
 * differently from CPython: the text opcodes INT and LONG are accepted in
 * the plain decimal CPython writes only (CPython reads them in base 0, so
 * "I011" would be 9), and a FLOAT literal beyond the double range is
 * refused as CPython refuses it.  Every length and count is
 * checked against the bytes actually present before anything is allocated;
 * memory use is bounded by a small multiple of len.  Sharing and cycles
 * are kept as the pickle makes them: an object the memo (or DUP) refers to
 * again is one shared node, and a list or dict that reaches itself is a
 * cycle in the tree, as pickle.loads() builds it.
 *
 * Statuses: MPC_VALUE for every malformed, refused or over-limit pickle,
 * with err->message naming the opcode, the global if any and the byte
 * offset ("refused opcode GLOBAL of global 'os.system' at offset 0",
 * "pickle data was truncated at offset 12", "memo key 7 not found at offset
 * 30", "unpickling stack underflow at offset 3", "nesting deeper than 1000
 * at offset 2010"); MPC_NOMEM; MPC_INVAL (NULL out, or pickle NULL with
 * len > 0).  The decoder keeps no state between calls.  err may be NULL. */
MPC_API mpc_status mpc_value_decode(const void *pickle, size_t len,
                                    const mpc_decode_options *opts, mpc_value **out,
                                    mpc_error *err);

/* Encodes v as a pickle.  protocol: 0 = 4 (the default of CPython 3.8-3.13,
 * readable by 3.4+), or 2, 3, 4, 5.  Protocol 2 is for Python 2.7 peers:
 * str as unicode, bytes as _codecs.encode(u'..', 'latin1') (which Python 2
 * loads as str), sets via __builtin__.set.  The output is byte-identical to
 * CPython's pickle.dumps(v, protocol) for trees whose shared sub-objects
 * match the Python object's (framing and memo included).  v is borrowed.  On
 * MPC_OK *out (caller owns; release with mpc_free()) and *len.  MPC_INVAL
 * (NULL argument, unsupported protocol), MPC_VALUE (a str or bytes over
 * 4 GiB at protocol 2 or 3), MPC_NOMEM.  err may be NULL. */
MPC_API mpc_status mpc_value_encode(const mpc_value *v, int protocol, void **out, size_t *len,
                                    mpc_error *err);

/* --- Python literal syntax --- */

/* Writes what Python 3's repr() prints for v into *out (caller owns; release
 * with mpc_free(); NUL-terminated) and sets *len (if not NULL) to its length
 * without the NUL.  v is borrowed.  Floats use the shortest text that
 * round-trips; str escapes follow str.isprintable() of Unicode 14 (Python
 * 3.11's table).  Sets print in insertion order (Python prints them in hash
 * order, which for str elements differs between processes).  A container
 * met again on its own path prints as "[...]" ("{...}", "(...)"), as in
 * Python.  A sub-object shared through the memo is printed at each place it
 * appears, as Python does, so the text of a small hostile pickle can be
 * exponentially long: print received values with mpc_value_repr_limit().
 * On any failure *out is NULL and *len 0.  Statuses: MPC_INVAL (NULL v or
 * out), MPC_VALUE (a path through a cycle deeper than MPC_VALUE_DEPTH_MAX,
 * where Python raises RecursionError: "nesting deeper than 2000 levels
 * through a cycle"), MPC_NOMEM; the message is in err, which may be NULL
 * (as for mpc_value_encode() and mpc_value_repr_limit()). */
MPC_API mpc_status mpc_value_repr(const mpc_value *v, char **out, size_t *len, mpc_error *err);

/* Parses one Python literal (the subset ast.literal_eval accepts for these
 * kinds) from text (borrowed, UTF-8, len bytes; surrounding whitespace
 * allowed): None, True, False; ints in decimal, 0x, 0o, 0b with '_'
 * separators and a sign; floats (1.5, 1e-5, .5, 1_0.0); 'str', "str",
 * triple-quoted, r'', and adjacent literals concatenated, with Python's
 * escapes (\n \t \xhh \ooo \uXXXX \UXXXXXXXX, not \N{...}); b'bytes';
 * [lists], (tuples,), {dicts: ...}, {sets}.  Extensions beyond
 * literal_eval, so that everything mpc_value_repr() prints parses back:
 * inf, nan, float('inf'), float('-inf'), float('nan'), set(),
 * set(<list/tuple/set>), frozenset(), frozenset(<list/tuple/set>),
 * bytearray(), bytearray(b'...').  On MPC_OK *out (caller owns; release
 * with mpc_value_free()).  MPC_VALUE with the offset and reason in
 * err->message ("invalid syntax at offset 3: expected ']'"), MPC_INVAL,
 * MPC_NOMEM.  Nesting is limited to MPC_VALUE_DEPTH_DEFAULT.  err may be
 * NULL. */
MPC_API mpc_status mpc_value_parse(const char *text, size_t len, mpc_value **out,
                                   mpc_error *err);

/* Like mpc_value_repr(), but refuses to produce more than max_len bytes of
 * text (NUL excluded): the walk stops as soon as the limit is passed, so a
 * hostile pickle whose memo shares one sub-object many times costs neither
 * the memory nor the time of its full text.  For printing received values
 * (the mpconn CLI caps them at 16 MiB).  On MPC_OK as mpc_value_repr() (*out
 * caller owns; release with mpc_free()); on any failure *out is NULL and
 * *len 0.  Statuses: those of mpc_value_repr(), and MPC_VALUE when the text
 * would be longer than max_len ("the repr is longer than 16777216 bytes").
 * err may be NULL.  mpc_value_repr() is this call with max_len SIZE_MAX. */
MPC_API mpc_status mpc_value_repr_limit(const mpc_value *v, size_t max_len, char **out,
                                        size_t *len, mpc_error *err);

/* --- Values over a connection (Connection.send(obj) / recv()) --- */

/* Sends v as one message holding its pickle: what CPython's
 * Connection.send(obj) puts on the wire (byte-identical at protocol 4 for
 * trees shaped like the Python object).  protocol as mpc_value_encode(): 0
 * = 4 (what CPython 3.8-3.13 send), or 2 (for Python 2.7 peers), 3, 4, 5.
 * v is borrowed; the pickle is built in a library buffer released before
 * the call returns.  Statuses: those of mpc_value_encode() (MPC_INVAL for a
 * NULL value or an unsupported protocol, MPC_VALUE, MPC_NOMEM; nothing was
 * sent and the connection is unaffected), then those of mpc_send_bytes().
 * The message is in mpc_conn_errmsg().  Blocks (io_timeout). */
MPC_API mpc_status mpc_send_value(mpc_conn *c, const mpc_value *v, int protocol);

/* Receives one message and decodes it as a pickle with mpc_value_decode()
 * (opts may be NULL: defaults), as CPython's Connection.recv() does, but
 * safely: nothing is executed.  The message size is bounded by the
 * connection's max_message_size (mpc_options), as for mpc_recv_bytes().  On
 * MPC_OK *out is the value (caller owns; release with mpc_value_free()).
 * On any failure *out is NULL (when out is not NULL).
 *   MPC_VALUE: the message arrived whole but is not an acceptable pickle
 *     (refused opcode or global, truncated pickle, over a limit, ...);
 *     mpc_conn_errmsg() holds the decoder's message, e.g. "refused opcode
 *     STACK_GLOBAL of global 'posix.system' at offset 28" for
 *     pickle.dumps(os.system).  The whole message was consumed, so the
 *     connection stays in step and usable: the next call receives the next
 *     message.
 *   MPC_NOMEM (while decoding; the message was consumed too), MPC_INVAL
 *   (NULL out), and every status of mpc_recv_bytes().
 * Blocks (io_timeout). */
MPC_API mpc_status mpc_recv_value(mpc_conn *c, const mpc_decode_options *opts,
                                  mpc_value **out);

/* ========================================================================
 * 4a. Values binding plumbing (PROVISIONAL: may change or leave the public
 *     header before 1.0).
 *
 * The pickle decoder driving a builder of the caller's: mpc_value_decode()
 * is this decoder with the builder of mpc_value trees, and a language
 * binding passes its own to build its values directly (the Python
 * extension builds Python objects for recv(restricted=True)).  Everything
 * the decoder decides stays in the decoder: the opcode machine, the
 * allow-list of globals and REDUCE shapes, every length and count check,
 * the memo and the nesting limit (unless the builder bounds it itself), and
 * the error messages with opcode and offset.  The builder only makes and
 * fills values, on the decoder's orders, and answers a few questions about
 * the values it made.
 * ======================================================================== */

/* A builder's value is an opaque non-NULL pointer (a handle).  The decoder
 * holds references to handles on its stack and in its memo: ref() adds
 * one, release() drops one; every call below that returns a handle gives
 * the decoder one reference, and make()/add() take over (consume) the
 * references of all the items passed, whether they succeed or not.
 *
 * A call that fails returns NULL (or a status) after filling err: status
 * MPC_NOMEM, or MPC_VALUE with a message (e.g. "unhashable type: 'list'"),
 * which the decoder prefixes with the opcode and suffixes with the offset.
 * ctx is the caller's, passed back unchanged. */
typedef struct mpc_value_builder {
    /* NONE, BOOL (i = 0 or 1), INT (i), FLOAT (f). */
    void *(*scalar)(void *ctx, mpc_vkind kind, int64_t i, double f, mpc_error *err);
    /* An int of any size: text 0: data is the payload of LONG1/LONG4
     * (little-endian two's complement, len bytes, len may be 0); text 1:
     * data is "[-]digits" (validated, no leading '+', not NUL-terminated)
     * of INT/LONG beyond int64.  Over the builder's limit: MPC_VALUE with
     * a message such as "exceeds the limit of 4300 digits". */
    void *(*bigint)(void *ctx, const unsigned char *data, size_t len, int text,
                    mpc_error *err);
    /* STR (data UTF-8, not validated: encoded surrogates are allowed, as in
     * CPython's 'surrogatepass'; invalid UTF-8 is MPC_VALUE), BYTES,
     * BYTEARRAY.  data is borrowed (copy it). */
    void *(*buffer)(void *ctx, mpc_vkind kind, const void *data, size_t len, mpc_error *err);
    /* A new LIST, TUPLE, DICT, SET or FROZENSET holding items[0..n) (for a
     * DICT n is even: key, value, key, value ...).  An equal dict key
     * replaces the value and keeps the first key; an equal set element is
     * dropped (Python's rules). */
    void *(*make)(void *ctx, mpc_vkind kind, void **items, size_t n, mpc_error *err);
    /* Adds items[0..n) to c, a handle of kind LIST (append), DICT (pairs)
     * or SET (add).  MPC_OK or the status of err. */
    mpc_status (*add)(void *ctx, void *c, mpc_vkind kind, void **items, size_t n,
                      mpc_error *err);
    /* Whether the SET c may still be added to (ADDITEMS).  NULL: always. */
    int (*can_add)(void *ctx, void *c);
    void (*ref)(void *ctx, void *h);
    void (*release)(void *ctx, void *h);
    /* Questions, asked only by STACK_GLOBAL and REDUCE: the kind of h;
     * the UTF-8 of a STR or the bytes of a BYTES or BYTEARRAY (*len set;
     * NULL if the builder cannot give it, e.g. a str with lone
     * surrogates, which then matches nothing); the length of a LIST or
     * TUPLE and its item i (borrowed). */
    mpc_vkind (*kind)(void *ctx, void *h);
    const char *(*data)(void *ctx, void *h, size_t *len);
    size_t (*len)(void *ctx, void *h);
    void *(*item)(void *ctx, void *h, size_t i);
    /* MPC_BUILDER_BOUNDS_DEPTH: the builder enforces opts->max_depth itself
     * (its make()/add() fail with "nesting deeper than N"); else the
     * decoder does, from the heights of what it built. */
    unsigned flags;
} mpc_value_builder;

#define MPC_BUILDER_BOUNDS_DEPTH 0x1u

/* Decodes one pickle as mpc_value_decode() does, building with b (ctx is
 * passed to every call).  On MPC_OK *out is the builder's handle of the
 * value (one reference, the caller's); on failure *out is NULL and every
 * reference the decoder held was released.  opts as mpc_value_decode()
 * (py2_str and max_depth are the decoder's; max_int_digits is for the
 * builder to apply, and the tree builder does).  Statuses and messages as
 * mpc_value_decode(); MPC_INVAL also for a NULL b. */
MPC_API mpc_status mpc_value_decode_with(const void *pickle, size_t len,
                                         const mpc_decode_options *opts,
                                         const mpc_value_builder *b, void *ctx, void **out,
                                         mpc_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MPCONN_H */
