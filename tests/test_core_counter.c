/* test_core_counter.c: th_counter_delta, the wrap arithmetic that sense's RAPL reader and
 * eco's energy counter share: plain steps, a wrap at max_range, a reset on a counter with
 * no wrap range, and readings above the range on either side. */
#include "thermo/core.h"

#include "test_util.h"

int main(void) {
    const uint64_t range = 262143328850ull; /* a real intel-rapl max_energy_range_uj */
    uint64_t d = 99;
    CHECK(th_counter_delta(100, 300, range, &d) == TH_COUNTER_STEP && d == 200, "step: %llu", (unsigned long long)d);
    CHECK(th_counter_delta(300, 300, range, &d) == TH_COUNTER_STEP && d == 0, "no change");
    CHECK(th_counter_delta(100, 300, 0, &d) == TH_COUNTER_STEP && d == 200, "step without a wrap range");
    CHECK(th_counter_delta(range - 1000, 500, range, &d) == TH_COUNTER_WRAP && d == 1500, "wrap: %llu",
          (unsigned long long)d);
    CHECK(th_counter_delta(range, 0, range, &d) == TH_COUNTER_WRAP && d == 0, "wrap from the top to 0");
    CHECK(th_counter_delta(range, range, range, &d) == TH_COUNTER_STEP && d == 0, "max_range itself is in range");
    d = 99;
    CHECK(th_counter_delta(500, 100, 0, &d) == TH_COUNTER_RESET && d == 0, "down with no range is a reset: %llu",
          (unsigned long long)d);
    d = 99;
    CHECK(th_counter_delta(100, range + 1, range, &d) == TH_COUNTER_ABOVE_RANGE && d == 0,
          "a reading above the range is rejected, not a step");
    CHECK(th_counter_delta(range + 1, 100, range, &d) == TH_COUNTER_ABOVE_RANGE, "a previous reading above the range");
    CHECK(th_counter_delta(UINT64_MAX, 5, UINT64_MAX, &d) == TH_COUNTER_WRAP && d == 5, "a full 64-bit counter wraps");
    return test_summary();
}
