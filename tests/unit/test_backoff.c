/* lib/backoff.c: decorrelated jitter stays inside its bounds, grows towards
 * the cap, starts over after a reset, and is reproducible for a seed. */
#include "unit_util.h"

#include "backoff.h"

static void test_bounds_over_many_seeds(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 2000; seed++) {
        redtls__backoff b;
        redtls__backoff_init(&b, 100, 5000, seed);
        unsigned prev = 100;
        for (int i = 0; i < 40; i++) {
            unsigned d = redtls__backoff_next(&b);
            unsigned hi = prev * 3 > 5000 ? 5000 : prev * 3;
            if (d < 100 || d > hi)
                fail_msg("seed %llu step %d: %u outside [100, %u]", (unsigned long long)seed, i, d, hi);
            prev = d;
        }
    }
}

static void test_grows_to_cap(void **state)
{
    (void)state;
    /* Averaged over seeds, delays grow step by step and then settle; the
     * first is within [base, 3 * base]. */
    double mean[12] = {0};
    const int runs = 1000;
    for (int s = 1; s <= runs; s++) {
        redtls__backoff b;
        redtls__backoff_init(&b, 50, 2000, (uint64_t)s * 7919);
        for (int i = 0; i < 12; i++)
            mean[i] += redtls__backoff_next(&b) / (double)runs;
    }
    print_message("mean delays (ms): %.0f %.0f %.0f %.0f %.0f ... %.0f\n", mean[0], mean[1], mean[2], mean[3],
                  mean[4], mean[11]);
    assert_true(mean[0] >= 50 && mean[0] <= 150);
    for (int i = 1; i < 5; i++)
        assert_true(mean[i] > mean[i - 1]);
    /* Near the cap each delay is uniform in [base, cap], and an early
     * short one pulls the next ones down: the settled mean is a bit under
     * half the cap. */
    assert_true(mean[11] > 0.35 * 2000 && mean[11] < 0.6 * 2000);
}

static void test_reset_starts_over(void **state)
{
    (void)state;
    redtls__backoff b;
    redtls__backoff_init(&b, 10, 10000, 42);
    for (int i = 0; i < 30; i++)
        redtls__backoff_next(&b);
    redtls__backoff_reset(&b);
    assert_true(redtls__backoff_next(&b) <= 30);
}

static void test_deterministic_for_a_seed(void **state)
{
    (void)state;
    redtls__backoff a, b;
    redtls__backoff_init(&a, 100, 5000, 12345);
    redtls__backoff_init(&b, 100, 5000, 12345);
    for (int i = 0; i < 50; i++)
        assert_int_equal(redtls__backoff_next(&a), redtls__backoff_next(&b));
    /* Different seeds spread clients apart. */
    redtls__backoff_init(&a, 100, 5000, 1);
    redtls__backoff_init(&b, 100, 5000, 2);
    int same = 0;
    for (int i = 0; i < 50; i++)
        same += redtls__backoff_next(&a) == redtls__backoff_next(&b);
    assert_true(same < 10);
}

static void test_degenerate_policy(void **state)
{
    (void)state;
    redtls__backoff b;
    redtls__backoff_init(&b, 0, 0, 9); /* clamped to 1 ms */
    for (int i = 0; i < 5; i++)
        assert_int_equal(redtls__backoff_next(&b), 1);
    redtls__backoff_init(&b, 300, 300, 9); /* base == cap: constant */
    for (int i = 0; i < 5; i++)
        assert_int_equal(redtls__backoff_next(&b), 300);
    redtls__backoff_init(&b, 100, 5000, 0); /* seeded by the OS */
    assert_true(b.rng != 0);
    redtls_config *cfg = unit_plain_config();
    assert_status(redtls_config_set_backoff(cfg, 0, 10), REDTLS_E_INVALID);
    assert_status(redtls_config_set_backoff(cfg, 20, 10), REDTLS_E_INVALID);
    assert_status(redtls_config_set_backoff(cfg, 10, 10), REDTLS_OK);
    redtls_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_over_many_seeds),
        cmocka_unit_test(test_grows_to_cap),
        cmocka_unit_test(test_reset_starts_over),
        cmocka_unit_test(test_deterministic_for_a_seed),
        cmocka_unit_test(test_degenerate_policy),
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
