// `dus`: the DUS Trainer command line. Everything lives in the commands (trainer/cmd_*.cpp).
#include "trainer/commands.h"

int main(int argc, char** argv) { return dus::run_cli(argc, argv); }
