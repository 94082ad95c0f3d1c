/*
 * test_status.c - the status table, error reports, caller-owned buffers
 * (including the 4K-aliasing offset) and the bytes-literal escaper used in
 * error messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

static void every_status_has_a_distinct_name_and_message(void **state)
{
    (void)state;
    for (int a = 0; a < MPC__STATUS_COUNT; a++) {
        const char *na = mpc_status_name((mpc_status)a);
        const char *ma = mpc_strerror((mpc_status)a);
        assert_non_null(na);
        assert_non_null(ma);
        assert_string_not_equal(na, "UNKNOWN");
        assert_string_not_equal(ma, "unknown status");
        assert_true(strlen(na) > 0 && strlen(ma) > 0);
        for (int b = a + 1; b < MPC__STATUS_COUNT; b++) {
            assert_string_not_equal(na, mpc_status_name((mpc_status)b));
            assert_string_not_equal(ma, mpc_strerror((mpc_status)b));
        }
    }
}

static void names_and_messages_come_from_the_table(void **state)
{
    (void)state;
#define CHECK_ENTRY(name, value, msg)                                                              \
    assert_int_equal(MPC_##name, value);                                                           \
    assert_string_equal(mpc_status_name(MPC_##name), #name);                                       \
    assert_string_equal(mpc_strerror(MPC_##name), msg);
    MPC_STATUS_MAP(CHECK_ENTRY)
#undef CHECK_ENTRY
    /* The CPython-facing texts the bindings rely on. */
    assert_string_equal(mpc_strerror(MPC_TOOLONG), "bad message length");
    assert_string_equal(mpc_strerror(MPC_TRUNCATED), "got end of file during message");
    assert_string_equal(mpc_strerror(MPC_CLOSED), "handle is closed");
    assert_int_equal(MPC_OK, 0);
}

static void values_outside_the_table_are_unknown(void **state)
{
    (void)state;
    const int bad[] = {-1, MPC__STATUS_COUNT, MPC__STATUS_COUNT + 1, 1000, INT32_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_string_equal(mpc_strerror((mpc_status)bad[i]), "unknown status");
        assert_string_equal(mpc_status_name((mpc_status)bad[i]), "UNKNOWN");
    }
}

static void the_version_string_matches_the_macros(void **state)
{
    (void)state;
    assert_string_equal(mpc_version(), MPC_VERSION_STRING);
}

static void an_error_report_is_formatted_and_returns_its_status(void **state)
{
    (void)state;
    mpc_error err;
    memset(&err, 0x55, sizeof err);
    assert_int_equal(mpc__error(&err, MPC_OS, ECONNREFUSED, "connect to %s:%d: %s", "127.0.0.1", 9,
                                "Connection refused"),
                     MPC_OS);
    assert_int_equal(err.status, MPC_OS);
    assert_int_equal(err.sys_errno, ECONNREFUSED);
    assert_string_equal(err.message, "connect to 127.0.0.1:9: Connection refused");
}

static void an_error_report_without_a_format_uses_the_status_message(void **state)
{
    (void)state;
    mpc_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(mpc__error(&err, MPC_TOOLONG, 0, NULL), MPC_TOOLONG);
    assert_string_equal(err.message, "bad message length");
    assert_int_equal(err.sys_errno, 0);
}

static void a_null_error_report_is_allowed(void **state)
{
    (void)state;
    assert_int_equal(mpc__error(NULL, MPC_AUTH, 0, "digest received was wrong"), MPC_AUTH);
    assert_int_equal(mpc__error(NULL, MPC_OK, 0, NULL), MPC_OK);
}

static void a_long_error_message_is_truncated_and_terminated(void **state)
{
    (void)state;
    char big[1000];
    mpc_error err;
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    mpc__error(&err, MPC_INVAL, 0, "%s", big);
    assert_int_equal(strlen(err.message), MPC_ERRMSG_MAX - 1);
    assert_int_equal(err.message[MPC_ERRMSG_MAX - 1], '\0');
}

static void options_init_zeroes_every_field_and_sets_the_size(void **state)
{
    (void)state;
    mpc_options o, zero;
    mpc_options lit = MPC_OPTIONS_INIT;
    memset(&o, 0xAB, sizeof o);
    memset(&zero, 0, sizeof zero);
    zero.size = sizeof zero;
    mpc_options_init(&o);
    assert_memory_equal(&o, &zero, sizeof o);
    assert_memory_equal(&lit, &zero, sizeof lit);
    mpc_options_init(NULL);
}

/* A caller compiled against an older, shorter struct: the library reads
 * only the part its size covers, the rest is default. */
static void options_are_read_only_as_far_as_their_size_goes(void **state)
{
    (void)state;
    unsigned char raw[sizeof(mpc_options) + 64];
    memset(raw, 0xAB, sizeof raw); /* what lies past the caller's struct */
    mpc_options *o = (mpc_options *)(void *)raw;
    size_t old_size = offsetof(mpc_options, backlog);
    memset(raw, 0, old_size);
    o->size = old_size;
    o->authkey_len = 7;
    mpc_options got;
    assert_ptr_equal(mpc__options_read(o, &got), &got);
    assert_int_equal(got.size, sizeof got);
    assert_int_equal(got.authkey_len, 7);
    assert_int_equal(got.backlog, 0);   /* past old_size: default */
    assert_int_equal(got.nonblocking, 0);
    /* size 0 (a zeroed struct): every field up to nonblocking is read. */
    mpc_options z;
    memset(&z, 0, sizeof z);
    z.nonblocking = 1;
    z.backlog = 5;
    mpc__options_read(&z, &got);
    assert_int_equal(got.nonblocking, 1);
    assert_int_equal(got.backlog, 5);
    /* NULL: all defaults. */
    mpc__options_read(NULL, &got);
    assert_int_equal(got.backlog, 0);
    assert_int_equal(got.size, sizeof got);
}

static void caller_buffers_are_usable_and_freed_with_mpc_free(void **state)
{
    (void)state;
    unsigned char *p = mpc__alloc_out(0);
    assert_non_null(p);
    mpc_free(p);

    p = mpc__alloc_out(100);
    assert_non_null(p);
    for (int i = 0; i < 100; i++)
        p[i] = (unsigned char)i;
    p = mpc__realloc_out(p, 100000);
    assert_non_null(p);
    for (int i = 0; i < 100; i++)
        assert_int_equal(p[i], (unsigned char)i);
    p[99999] = 1;
    p = mpc__realloc_out(p, 10);
    assert_non_null(p);
    assert_int_equal(p[9], 9);
    mpc_free(p);

    p = mpc__realloc_out(NULL, 32);
    assert_non_null(p);
    mpc_free(p);
    mpc_free(NULL);
}

static void an_impossible_allocation_fails_cleanly(void **state)
{
    (void)state;
    assert_null(mpc__alloc_out(SIZE_MAX));
    assert_null(mpc__alloc_out(SIZE_MAX - 10));
    unsigned char *p = mpc__alloc_out(8);
    assert_non_null(p);
    assert_null(mpc__realloc_out(p, SIZE_MAX));
    mpc_free(p); /* still owned after the failed realloc */
}

static void a_large_buffer_does_not_start_at_page_offset_0_or_16(void **state)
{
    (void)state;
    /* Sizes glibc always serves with mmap (its dynamic threshold starts at
     * 128 KiB and never exceeds 32 MiB), so the page offset is deterministic:
     * without the library's offset it would be 16. */
    const size_t sizes[] = {(size_t)16 << 20, (size_t)64 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = mpc__alloc_out(sizes[i]);
        assert_non_null(p);
        uintptr_t off = (uintptr_t)p % 4096;
        assert_int_not_equal(off, 0);
        assert_int_not_equal(off, 16);
        p[0] = 1;
        p[sizes[i] - 1] = 2;
        mpc_free(p);
    }
}

static void repr(const void *data, size_t len, size_t cap, char *out)
{
    mpc__repr_bytes(data, len, out, cap);
}

static void bytes_are_quoted_like_a_python_bytes_literal(void **state)
{
    (void)state;
    char out[128];
    repr("abc", 3, sizeof out, out);
    assert_string_equal(out, "abc");
    repr("", 0, sizeof out, out);
    assert_string_equal(out, "");
    repr("\x00\x01\x7f\x80\xff", 5, sizeof out, out);
    assert_string_equal(out, "\\x00\\x01\\x7f\\x80\\xff");
    repr("a'b\\c", 5, sizeof out, out);
    assert_string_equal(out, "a\\'b\\\\c");
    repr("\n\r\t", 3, sizeof out, out);
    assert_string_equal(out, "\\n\\r\\t");
    repr("{sha256} ~", 10, sizeof out, out);
    assert_string_equal(out, "{sha256} ~");
}

static void long_bytes_are_truncated_with_an_ellipsis(void **state)
{
    (void)state;
    unsigned char data[300];
    char out[64];
    memset(data, 'z', sizeof data);
    repr(data, sizeof data, sizeof out, out);
    assert_true(strlen(out) < sizeof out);
    assert_true(strlen(out) >= sizeof out - 8);
    assert_string_equal(out + strlen(out) - 3, "...");
    assert_int_equal(out[0], 'z');

    /* Escapes are never cut in half. */
    memset(data, 0xAB, sizeof data);
    repr(data, sizeof data, sizeof out, out);
    size_t n = strlen(out);
    assert_true(n < sizeof out);
    assert_string_equal(out + n - 3, "...");
    assert_int_equal((n - 3) % 4, 0);
    for (size_t i = 0; i < n - 3; i += 4)
        assert_memory_equal(out + i, "\\xab", 4);
}

static void tiny_output_buffers_stay_terminated(void **state)
{
    (void)state;
    char out[8];
    memset(out, 'Q', sizeof out);
    repr("abcdefghijkl", 12, 1, out);
    assert_int_equal(out[0], '\0');
    assert_int_equal(out[1], 'Q');
    memset(out, 'Q', sizeof out);
    repr("abcdefghijkl", 12, 4, out);
    assert_true(strlen(out) < 4);
    memset(out, 'Q', sizeof out);
    repr("abc", 3, 0, out); /* cap 0: nothing written */
    assert_int_equal(out[0], 'Q');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_status_has_a_distinct_name_and_message),
        cmocka_unit_test(names_and_messages_come_from_the_table),
        cmocka_unit_test(values_outside_the_table_are_unknown),
        cmocka_unit_test(the_version_string_matches_the_macros),
        cmocka_unit_test(an_error_report_is_formatted_and_returns_its_status),
        cmocka_unit_test(an_error_report_without_a_format_uses_the_status_message),
        cmocka_unit_test(a_null_error_report_is_allowed),
        cmocka_unit_test(a_long_error_message_is_truncated_and_terminated),
        cmocka_unit_test(options_init_zeroes_every_field_and_sets_the_size),
        cmocka_unit_test(options_are_read_only_as_far_as_their_size_goes),
        cmocka_unit_test(caller_buffers_are_usable_and_freed_with_mpc_free),
        cmocka_unit_test(an_impossible_allocation_fails_cleanly),
        cmocka_unit_test(a_large_buffer_does_not_start_at_page_offset_0_or_16),
        cmocka_unit_test(bytes_are_quoted_like_a_python_bytes_literal),
        cmocka_unit_test(long_bytes_are_truncated_with_an_ellipsis),
        cmocka_unit_test(tiny_output_buffers_stay_terminated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
