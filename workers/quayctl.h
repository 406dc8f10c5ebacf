/*
 * quayctl: the admin command.  quayctl.c only dispatches; each subcommand
 * lives in its own quayctl_<name>.c and returns the process exit status
 * (0 on success, 1 on a reported failure, 2 on a usage error).
 */

#ifndef QUAYCTL_H
#define QUAYCTL_H

int quayctl_migrate_main(int argc, char **argv);
int quayctl_config_main(int argc, char **argv);
int quayctl_user_main(int argc, char **argv);

/* Prints "quayctl: <msg>" on stderr; one line, never a secret. */
void quayctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* QUAYCTL_H */
