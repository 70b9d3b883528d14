/* Calls one kernel of a library written by tex.export_library, on arrays read from files.

     library_harness LIB KERNEL NSIZES SIZE... NBUFFERS FILE...

   Each FILE holds the raw bytes of one parameter, in the kernel's parameter order
   (outputs too, at their full size); the kernel runs once and every buffer is
   written back to FILE.out. Used by tests/test_machines.py to run a library built
   for another machine under an emulator. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static void *read_file(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = aligned_alloc(64, (size_t)((*size + 63) / 64 * 64 + 64));
    if (!data || fread(data, 1, (size_t)*size, f) != (size_t)*size) { perror(path); exit(2); }
    fclose(f);
    return data;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s LIB KERNEL NSIZES SIZE... NBUFFERS FILE...\n", argv[0]); return 2; }
    void *library = dlopen(argv[1], RTLD_NOW);
    if (!library) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    int (*kernel)(void **, const int64_t *) =
        (int (*)(void **, const int64_t *))dlsym(library, argv[2]);
    const char *(*last_error)(void) = (const char *(*)(void))dlsym(library, "tex_last_error");
    if (!kernel || !last_error) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    int at = 3, nsizes = atoi(argv[at++]);
    int64_t sizes[16];
    for (int k = 0; k < nsizes && k < 16; k++) sizes[k] = atoll(argv[at++]);
    int nbuffers = atoi(argv[at++]);
    void *buffers[64];
    long bytes[64];
    for (int k = 0; k < nbuffers && k < 64; k++) buffers[k] = read_file(argv[at + k], &bytes[k]);
    if (kernel(buffers, sizes) != 0) { fprintf(stderr, "%s\n", last_error()); return 3; }
    char path[4096];
    for (int k = 0; k < nbuffers && k < 64; k++) {
        snprintf(path, sizeof path, "%s.out", argv[at + k]);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buffers[k], 1, (size_t)bytes[k], f) != (size_t)bytes[k]) { perror(path); return 2; }
        fclose(f);
    }
    return 0;
}
