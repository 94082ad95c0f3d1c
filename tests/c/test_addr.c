/*
 * test_addr.c - address parsing (addr.c): every accepted form and every
 * rejected one, with the message a user would see.  Pure: no sockets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "transport/transport.h"

static mpc__addr parse_ok(const char *text)
{
    mpc__addr a;
    mpc_error e;
    memset(&e, 0, sizeof e);
    mpc_status st = mpc__addr_parse(text, &a, &e);
    if (st != MPC_OK)
        fail_msg("'%s' was rejected: %s", text, e.message);
    return a;
}

static void expect_invalid(const char *text, const char *words)
{
    mpc__addr a;
    mpc_error e;
    memset(&e, 0, sizeof e);
    assert_int_equal(mpc__addr_parse(text, &a, &e), MPC_INVAL);
    assert_int_equal(e.status, MPC_INVAL);
    if (!strstr(e.message, words))
        fail_msg("'%s': message '%s' lacks '%s'", text ? text : "(null)", e.message, words);
}

static void host_and_port_parse_as_tcp(void **state)
{
    (void)state;
    mpc__addr a = parse_ok("127.0.0.1:4660");
    assert_int_equal(a.kind, MPC__ADDR_TCP);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 4660);
    assert_int_equal(a.bracketed, 0);

    a = parse_ok("localhost:0");
    assert_string_equal(a.host, "localhost");
    assert_int_equal(a.port, 0);

    a = parse_ok(":65535");
    assert_int_equal(a.kind, MPC__ADDR_TCP);
    assert_string_equal(a.host, "");
    assert_int_equal(a.port, 65535);
}

static void bracketed_ipv6_parses_without_the_brackets(void **state)
{
    (void)state;
    mpc__addr a = parse_ok("[::1]:0");
    assert_int_equal(a.kind, MPC__ADDR_TCP);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.bracketed, 1);
    assert_int_equal(a.port, 0);

    a = parse_ok("[fe80::1%lo]:4000");
    assert_string_equal(a.host, "fe80::1%lo");
    assert_int_equal(a.port, 4000);
}

static void anything_with_a_slash_or_without_a_colon_is_a_unix_path(void **state)
{
    (void)state;
    mpc__addr a = parse_ok("/tmp/x.sock");
    assert_int_equal(a.kind, MPC__ADDR_UNIX);
    assert_string_equal(a.path, "/tmp/x.sock");
    assert_int_equal(a.path_len, 11);

    a = parse_ok("./rel:1");
    assert_int_equal(a.kind, MPC__ADDR_UNIX);
    assert_string_equal(a.path, "./rel:1");

    a = parse_ok("plainname");
    assert_int_equal(a.kind, MPC__ADDR_UNIX);
    assert_string_equal(a.path, "plainname");
}

static void an_at_sign_names_an_abstract_socket(void **state)
{
    (void)state;
    mpc__addr a = parse_ok("@my-service");
    assert_int_equal(a.kind, MPC__ADDR_ABSTRACT);
    assert_int_equal(a.path_len, 10);
    assert_memory_equal(a.path, "my-service", 10);
    expect_invalid("@", "empty abstract name");
}

static void ports_outside_0_to_65535_or_not_numbers_are_rejected(void **state)
{
    (void)state;
    expect_invalid("127.0.0.1:65536", "out of range");
    expect_invalid("127.0.0.1:99999999999", "out of range");
    expect_invalid("127.0.0.1:", "missing port");
    expect_invalid("127.0.0.1:http", "not a number");
    expect_invalid("127.0.0.1:-1", "not a number");
    expect_invalid("127.0.0.1:80 ", "not a number");
    expect_invalid("[::1]:", "missing port");
    expect_invalid("[::1]:1x", "not a number");
    parse_ok("127.0.0.1:00080");
}

static void bracket_mistakes_are_rejected_with_a_reason(void **state)
{
    (void)state;
    expect_invalid("[::1:80", "missing ']'");
    expect_invalid("[::1]", "missing port");
    expect_invalid("[::1]80", "expected ':' after ']'");
    expect_invalid("[]:80", "empty IPv6 host");
    expect_invalid("::1:80", "brackets");
    expect_invalid("host]:80", "unexpected bracket");
    expect_invalid("[[::1]]:80", "unexpected '['");
}

static void empty_and_null_addresses_are_rejected(void **state)
{
    (void)state;
    expect_invalid("", "empty");
    expect_invalid(NULL, "NULL");
}

static void unix_paths_longer_than_sun_path_are_rejected(void **state)
{
    (void)state;
    char path[300];
    memset(path, 'a', sizeof path);
    path[0] = '/';
    path[107] = '\0'; /* 107 bytes + NUL fit sun_path exactly */
    mpc__addr a = parse_ok(path);
    assert_int_equal(a.path_len, 107);

    path[107] = 'a';
    path[108] = '\0';
    expect_invalid(path, "Unix socket path too long: 108 bytes, the limit is 107");

    path[299] = '\0';
    expect_invalid(path, "too long");

    char name[200];
    memset(name, 'n', sizeof name);
    name[0] = '@';
    name[108] = '\0'; /* 107-byte name after the leading NUL: fits */
    parse_ok(name);
    name[108] = 'n';
    name[109] = '\0';
    expect_invalid(name, "abstract socket name too long");
}

static void long_hosts_are_rejected(void **state)
{
    (void)state;
    char text[400];
    memset(text, 'h', sizeof text);
    memcpy(text + 300, ":80", 4);
    expect_invalid(text, "host too long");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(host_and_port_parse_as_tcp),
        cmocka_unit_test(bracketed_ipv6_parses_without_the_brackets),
        cmocka_unit_test(anything_with_a_slash_or_without_a_colon_is_a_unix_path),
        cmocka_unit_test(an_at_sign_names_an_abstract_socket),
        cmocka_unit_test(ports_outside_0_to_65535_or_not_numbers_are_rejected),
        cmocka_unit_test(bracket_mistakes_are_rejected_with_a_reason),
        cmocka_unit_test(empty_and_null_addresses_are_rejected),
        cmocka_unit_test(unix_paths_longer_than_sun_path_are_rejected),
        cmocka_unit_test(long_hosts_are_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
