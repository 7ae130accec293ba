/* lib/deadline.c: monotonic time and deadline arithmetic. */
#include "unit_util.h"

#include <limits.h>
#include <time.h>

static void test_now_is_monotonic(void **state)
{
    (void)state;
    int64_t a = redtls__now_ms();
    assert_true(a > 0);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    int64_t b = redtls__now_ms();
    assert_true(b >= a + 19);
    assert_true(b < a + 2000);
}

static void test_deadline_after(void **state)
{
    (void)state;
    assert_true(redtls__deadline_after(0) == REDTLS__NO_DEADLINE);
    assert_true(REDTLS__NO_DEADLINE == INT64_MAX);
    int64_t now = redtls__now_ms();
    int64_t d = redtls__deadline_after(1000);
    assert_true(d >= now + 1000 && d <= now + 1100);
    /* The largest timeout does not overflow or turn into "no deadline". */
    int64_t big = redtls__deadline_after(UINT_MAX);
    assert_true(big != REDTLS__NO_DEADLINE);
    assert_true(big >= now + (int64_t)UINT_MAX);
}

static void test_poll_timeout(void **state)
{
    (void)state;
    assert_int_equal(redtls__poll_timeout(REDTLS__NO_DEADLINE), -1);
    int64_t now = redtls__now_ms();
    assert_int_equal(redtls__poll_timeout(now - 5), 0);
    assert_int_equal(redtls__poll_timeout(0), 0);
    int left = redtls__poll_timeout(now + 1000);
    assert_true(left > 900 && left <= 1000);
    /* Far away: clamped, never negative (which poll() reads as forever). */
    assert_int_equal(redtls__poll_timeout(now + (int64_t)INT_MAX * 4), INT_MAX);
    assert_int_equal(redtls__poll_timeout(INT64_MAX - 1), INT_MAX);
    assert_int_equal(redtls__poll_timeout(redtls__deadline_after(0)), -1);
}

static void test_deadline_min(void **state)
{
    (void)state;
    assert_true(redtls__deadline_min(5, 7) == 5);
    assert_true(redtls__deadline_min(7, 5) == 5);
    assert_true(redtls__deadline_min(5, 5) == 5);
    assert_true(redtls__deadline_min(REDTLS__NO_DEADLINE, 42) == 42);
    assert_true(redtls__deadline_min(42, REDTLS__NO_DEADLINE) == 42);
    assert_true(redtls__deadline_min(REDTLS__NO_DEADLINE, REDTLS__NO_DEADLINE) == REDTLS__NO_DEADLINE);
    assert_int_equal(redtls__poll_timeout(redtls__deadline_min(REDTLS__NO_DEADLINE, REDTLS__NO_DEADLINE)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_now_is_monotonic),
        cmocka_unit_test(test_deadline_after),
        cmocka_unit_test(test_poll_timeout),
        cmocka_unit_test(test_deadline_min),
    };
    return cmocka_run_group_tests_name("deadline", tests, NULL, NULL);
}
