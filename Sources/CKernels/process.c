// Process plumbing that needs C (prctl is variadic, so Swift cannot call it directly).
#include "ckernels.h"
#include <signal.h>
#include <sys/prctl.h>
#include <malloc.h>
#include <unistd.h>

int kern_die_with_parent(void) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -1;
    // The parent may already be gone (reparented to init): then die now rather than linger.
    return getppid() == 1 ? -2 : 0;
}

// glibc raises its mmap threshold to the size of each large block freed (up to 32 MB), after which blocks of that
// size come from the heap and their memory stays with the process when freed. Loading converts tensor after tensor
// through f32 temporaries of 1-130 MB: with the dynamic threshold an f16 model of 1.6 GB peaked at 2.5 GB resident.
// A fixed threshold keeps every block of 1 MB or more in its own mapping, returned to the system on free.
void kern_large_blocks_unmapped_on_free(void) { mallopt(M_MMAP_THRESHOLD, 1 << 20); }
