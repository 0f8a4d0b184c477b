// Process plumbing that needs C (prctl is variadic, so Swift cannot call it directly).
#include "ckernels.h"
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

int kern_die_with_parent(void) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -1;
    // The parent may already be gone (reparented to init): then die now rather than linger.
    return getppid() == 1 ? -2 : 0;
}
