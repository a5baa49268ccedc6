/* parser_bench.c: how long lv_http_parse_request takes per request.
 *
 * Parses a few realistic request heads (what wrk sends, a curl GET, a browser
 * GET, an SDK-style POST) millions of times each and prints ns per request.
 * The buffer is re-read every iteration and the result is folded into a sum
 * the program prints, so the compiler cannot drop the work. Time is the
 * thread's CPU time, best of five rounds, so a busy shared machine skews it
 * less. Build by hand:
 *
 *   gcc -O2 -std=gnu11 -D_GNU_SOURCE -Isrc bench/micro/parser_bench.c \
 *       src/http/parser.c -o /tmp/parser_bench && /tmp/parser_bench [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/parser.h"

static const struct {
    const char *name;
    const char *head;
} cases[] = {
    {"wrk", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"},
    {"curl", "GET /api/v1/items?limit=10&offset=20 HTTP/1.1\r\nHost: localhost:8080\r\n"
             "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"},
    {"browser", "GET /static/app.3f9a1c.js HTTP/1.1\r\n"
                "Host: www.example.com\r\n"
                "Connection: keep-alive\r\n"
                "sec-ch-ua: \"Chromium\";v=\"122\", \"Not(A:Brand\";v=\"24\"\r\n"
                "sec-ch-ua-mobile: ?0\r\n"
                "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
                "Gecko) Chrome/122.0.0.0 Safari/537.36\r\n"
                "sec-ch-ua-platform: \"Linux\"\r\n"
                "Accept: */*\r\n"
                "Sec-Fetch-Site: same-origin\r\n"
                "Sec-Fetch-Mode: no-cors\r\n"
                "Sec-Fetch-Dest: script\r\n"
                "Referer: https://www.example.com/\r\n"
                "Accept-Encoding: gzip, deflate, br\r\n"
                "Accept-Language: en-US,en;q=0.9\r\n"
                "Cookie: session=3b9f0c2a7d1e4f5a8b6c; theme=dark\r\n\r\n"},
    {"sdk-post", "POST /2015-03-31/functions/resize/invocations HTTP/1.1\r\n"
                 "Host: 127.0.0.1:8080\r\n"
                 "Accept-Encoding: identity\r\n"
                 "X-Amz-Invocation-Type: RequestResponse\r\n"
                 "User-Agent: Boto3/1.26.27 Python/3.11.2 Linux/6.1.0 Botocore/1.29.27\r\n"
                 "X-Amz-Date: 20240301T120000Z\r\n"
                 "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240301/us-east-1/"
                 "lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=5d672d79c15b13"
                 "162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7\r\n"
                 "Content-Length: 27\r\n\r\n"},
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 2000000;
    static lv_http_request_t req;
    long long sum = 0;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t len = strlen(cases[c].head);
        char *buf = malloc(len);
        memcpy(buf, cases[c].head, len);
        int status = 0;
        if (lv_http_parse_request(buf, len, 0, 8192, &req, &status) != (ssize_t)len) {
            fprintf(stderr, "%s: does not parse (status %d)\n", cases[c].name, status);
            return 1;
        }
        double dt = 0;
        for (int round = 0; round < 5; round++) {
            double t0 = now_ns();
            for (long i = 0; i < iters; i++) {
                __asm__ volatile("" ::"r"(buf) : "memory"); /* the buffer may have changed */
                sum += lv_http_parse_request(buf, len, 0, 8192, &req, &status);
                sum += (long long)req.num_headers;
            }
            double t = now_ns() - t0;
            if (round == 0 || t < dt)
                dt = t;
        }
        printf("%-9s %4zu bytes %2zu headers  %6.1f ns/request  %6.2f GB/s\n", cases[c].name, len,
               req.num_headers, dt / iters, (double)len * iters / dt);
        free(buf);
    }
    printf("(checksum %lld)\n", sum);
    return 0;
}
