/* apply_journal.h — crash-safe in-place editing: a checkpoint file (which
 * block comes next, for which arguments) and a journal holding the original
 * bytes of the block being rewritten, so a killed run resumes exactly. */
#ifndef CULEACE_CLI_APPLY_JOURNAL_H
#define CULEACE_CLI_APPLY_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *ckpt_path;    /* FILE.culeace-apply */
  char *journal_path; /* FILE.culeace-journal */
  char *identity;     /* the arguments the checkpoint belongs to */
  int journal_open;   /* 1 once journal_fd holds the journal, for writing */
  int journal_fd;
} apply_journal;

/* Position of the next block to edit. */
typedef struct {
  int64_t item; /* index into the list of (eraser, layer) pairs */
  int64_t ex;   /* first example of the block */
} apply_pos;

int apply_journal_init(apply_journal *j, const char *file,
                       const char *identity);
void apply_journal_free(apply_journal *j);

/* Reads the checkpoint: 0 none (fresh start), 1 found (pos set), -1 error:
 * it belongs to other arguments or is unreadable (msg set). */
int apply_journal_resume(apply_journal *j, apply_pos *pos, char *msg,
                         size_t msglen);
/* Writes the checkpoint atomically (tmp + rename + fsync). 0 ok. */
int apply_journal_checkpoint(apply_journal *j, apply_pos pos);
/* Saves the original bytes of the block at pos (durable on return),
 * overwriting the journal's previous block in place. 0 ok. */
int apply_journal_save(apply_journal *j, apply_pos pos, const void *bytes,
                       size_t len);
/* apply_journal_save in two steps: the bytes written (not yet durable:
 * the caller makes them so with fdatasync(journal_fd) before it writes the
 * block), 0 ok. */
int apply_journal_write(apply_journal *j, apply_pos pos, const void *bytes,
                        size_t len);
/* If the journal holds a complete, intact block starting at pos (of at most
 * cap bytes), copies its bytes into buf, sets *len and returns 1; else 0. */
int apply_journal_pending(apply_journal *j, apply_pos pos, void *buf,
                          size_t cap, size_t *len);
/* Removes journal and checkpoint (in that order). */
void apply_journal_finish(apply_journal *j);

#endif
