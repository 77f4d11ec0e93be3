/* main.c — entry point of the `culeace` command: dispatches subcommands. */
#include <stdio.h>
#include "culeace.h"
int main(void) { printf("%s\n", culeace_version()); return 0; }
