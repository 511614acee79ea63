/* Preloaded before Debian's libfaketime (0.9.10) by scripts/test.sh when SANKE_TEST_FAKETIME is set.
 *
 * With FAKETIME_DONT_FAKE_MONOTONIC=1 that libfaketime still moves the absolute deadline of
 * clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ...) by the fake offset, so the kernel refuses
 * it (EINVAL): Python's time.sleep fails.  Sleeps on any clock but the real-time one go straight
 * to the kernel here; the real-time clock's go on to libfaketime. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *req, struct timespec *rem) {
  static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
  if (clock_id != CLOCK_REALTIME) {
    return syscall(SYS_clock_nanosleep, clock_id, flags, req, rem) == 0 ? 0 : errno;
  }
  if (!next) next = dlsym(RTLD_NEXT, "clock_nanosleep");
  return next(clock_id, flags, req, rem);
}
