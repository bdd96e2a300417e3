/* kvz-image subcommands; each returns the process exit status. */
#ifndef KVZ_IMAGE_CMDS_H
#define KVZ_IMAGE_CMDS_H

#include <stdbool.h>

/* Set once in main() from --json before any command runs. */
extern bool image_json;

/* Prints and frees a JSON object (one line). */
struct json_t;
void image_print_json(struct json_t *o);

int cmd_create(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_resize(int argc, char **argv);

#endif
