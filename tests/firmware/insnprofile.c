/* A QEMU TCG plugin (API version 1, QEMU 7.x) for bench/firmware_profile.py: counts how often
 * each translated block runs and writes "start-address instructions executions" per block to the
 * file named by $PROF_OUT at exit, for a per-function instruction profile. As insncount.c, only
 * the API functions it calls are declared here. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdbool.h>
typedef uint64_t qemu_plugin_id_t;
typedef struct { const char *target_name; struct { int min, cur; } version; bool system_emulation;
                 union { struct { int smp_vcpus, max_vcpus; } system; }; } qemu_info_t;
struct qemu_plugin_tb;
typedef void (*tb_trans_cb)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb)(qemu_plugin_id_t, void *);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, int op, void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb, void *);
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
typedef struct rec { uint64_t pc, n, count; struct rec *next; } rec;
static rec *head;
static void trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    rec *r = calloc(1, sizeof *r);
    r->pc = qemu_plugin_tb_vaddr(tb); r->n = qemu_plugin_tb_n_insns(tb); r->next = head; head = r;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, 0, &r->count, 1);
}
static void done(qemu_plugin_id_t id, void *p) { (void)id; (void)p;
  FILE *f = fopen(getenv("PROF_OUT") ? getenv("PROF_OUT") : "insnprofile.txt", "w");
  if (!f) return;
  for (rec *r = head; r; r = r->next) if (r->count) fprintf(f, "%llx %llu %llu\n", (unsigned long long)r->pc, (unsigned long long)r->n, (unsigned long long)r->count);
  fclose(f); }
__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info; (void)argc; (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, trans);
    qemu_plugin_register_atexit_cb(id, done, NULL);
    return 0;
}
