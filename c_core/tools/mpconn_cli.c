/* placeholder until the CLI lands; replaced by the transport work */
#include "mpconn.h"
#include <stdio.h>
int main(void) { printf("mpconn %s\n", mpc_version()); return 0; }
