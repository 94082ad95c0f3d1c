/*
 * internal.h - declarations shared by the library's source files (never
 * installed).  Internal non-static functions use the mpc__ prefix.
 */
#ifndef MPC_INTERNAL_H
#define MPC_INTERNAL_H

#include "mpconn.h"

#include <stdarg.h>

#if defined(__GNUC__)
#define MPC__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MPC__PRINTF(a, b)
#endif

/* Fills err (if not NULL) with status, errno and a formatted message, and
 * returns status so callers can write `return mpc__error(err, ...)`. */
mpc_status mpc__error(mpc_error *err, mpc_status status, int sys_errno, const char *fmt, ...)
    MPC__PRINTF(4, 5);
mpc_status mpc__verror(mpc_error *err, mpc_status status, int sys_errno, const char *fmt,
                       va_list ap);

/* Copies the caller's options into *out as this library's struct: the part
 * the caller's `size` covers (0: the 0.2 struct), the rest zero (default).
 * in may be NULL (all defaults).  Returns out.  Every entry point that
 * takes options reads them through this. */
const mpc_options *mpc__options_read(const mpc_options *in, mpc_options *out);

/* Buffers handed to callers (released with mpc_free()).  They start 64
 * bytes into their allocation so large buffers (which glibc places at page
 * offset 16) do not start at page offset 0 or 16, the 4K-aliasing trap of
 * SPEC section 6.  mpc__realloc_out(NULL, n) == mpc__alloc_out(n). */
void *mpc__alloc_out(size_t n);
void *mpc__realloc_out(void *p, size_t n);

/* Escapes bytes as a Python bytes literal body (b'...' without the b and
 * quotes: printable ASCII as is, \\x.. otherwise) into out (cap bytes,
 * always NUL-terminated, truncated with "..." if needed).  For error
 * messages that quote what a peer sent, as CPython's do. */
void mpc__repr_bytes(const void *data, size_t len, char *out, size_t cap);

/* The handshake's HMAC (handshake.c), for tests: HMAC-<digest>(key, data)
 * with digest one of the allowed names ("md5", "sha256", "sha384",
 * "sha3_256", "sha3_384") into out (MPC__HS_MAC_MAX bytes of room);
 * *out_len = the MAC length.  1 on success, 0 on an unknown digest, bad
 * arguments or a libcrypto failure.  mpc__hs_hmac_cached(digest) is 1 when
 * that digest's HMACs go through the process-wide template cache (building
 * it if needed), 0 when they take the one-shot fallback. */
#define MPC__HS_MAC_MAX 64
int mpc__hs_hmac(const char *digest, const void *key, size_t key_len, const void *data,
                 size_t data_len, unsigned char *out, size_t *out_len);
int mpc__hs_hmac_cached(const char *digest);

#endif
