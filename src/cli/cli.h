/* kvz: subcommands and what they share. Each cmd_* gets argv starting at
 * the subcommand's first argument and returns the process exit code. */
#ifndef KVZ_CLI_H
#define KVZ_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

/* --json was given: print the API's JSON instead of tables. Set by main()
 * before any command runs. */
extern bool cli_json;

int cmd_create(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_destroy(int argc, char **argv);
int cmd_set(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_console(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_host(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_job(int argc, char **argv);
int cmd_node(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_cluster(int argc, char **argv);
int cmd_image(int argc, char **argv);

/* jobs_cmd.c: follows a job (its record, borrowed) until it ends; the exit
 * code: 0 when it completed. */
int follow_job(json_t *job);
/* Takes --detach out of argv. */
bool job_take_detach(int *argc, char **argv);
/* A job was submitted (job: owned): follow it, or with detach print its id;
 * the exit code. */
int job_submitted(json_t *job, bool detach);
int cmd_backup(int argc, char **argv);

/* items_cmd.c: create|list|restore|delete of a guest's snapshots or
 * backups. */
struct item_kind {
	const char *noun;       /* "snapshot" */
	const char *meta;       /* "SNAP", in usage */
	const char *collection; /* beneath /v1/guests/NAME/ */
	size_t max_len;
	void (*print)(json_t *list);
};
int item_cmd(const struct item_kind *k, int argc, char **argv);

/* format.c */
/* "512M", "-" for 0. */
const char *fmt_size(uint64_t v, char *buf, unsigned len);
/* "2026-01-02 03:04:05" in UTC. */
const char *fmt_time(int64_t ms, char *buf, unsigned len);
void print_json(json_t *j);
/* Prints the guest table (list and top). */
void print_guest_table(json_t *guests);
/* /v1/guests/NAME with a check of the name first. NULL after a message. */
json_t *get_guest(const char *name);
/* Escapes name for a URL path (names are restricted, but be safe). */
bool name_ok(const char *name);

#endif
