/* bf16_probe.c: what vdpbf16ps computes on this CPU, found empirically (issue 17). Random
 * bf16 pairs and fp32 accumulators over the whole exponent range (and tiny values), each lane
 * against a scalar model: DAZ on the inputs and acc, products exact with an unbounded
 * exponent (in double), acc + odd product rounded to fp32 and flushed, then + even product
 * rounded and flushed. flush products 1 tries the alternative where tiny products are flushed
 * too (it mismatches); a few crafted cases are printed. The model found here is
 * th_mm_bf16_pair_step (src/model/matmul_avx512.h). make bf16_probe && ./bf16_probe */
#include <immintrin.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
static float f_of(uint32_t u){float f;memcpy(&f,&u,4);return f;}
static uint32_t u_of(float f){uint32_t u;memcpy(&u,&f,4);return u;}
static float ftz(float x){ return fpclassify(x)==FP_SUBNORMAL ? copysignf(0.0f,x) : x;}
static float bf(uint16_t h){return f_of((uint32_t)h<<16);}
static float model(float acc, uint16_t a0,uint16_t a1,uint16_t b0,uint16_t b1, int flushp){
  double p1 = (double)ftz(bf(a1))*ftz(bf(b1)), p0 = (double)ftz(bf(a0))*ftz(bf(b0));
  if (flushp){ if (fabs(p1)<0x1p-126) p1=copysign(0.0,p1); if (fabs(p0)<0x1p-126) p0=copysign(0.0,p0);}
  float t = ftz((float)((double)ftz(acc) + p1)); return ftz((float)((double)t + p0));
}
__attribute__((target("avx512f,avx512bf16")))
static float hw(float acc, uint16_t a0,uint16_t a1,uint16_t b0,uint16_t b1){
  uint32_t A = a0 | (uint32_t)a1<<16, B = b0 | (uint32_t)b1<<16;
  __m512 c = _mm512_set1_ps(acc);
  c = _mm512_dpbf16_ps(c,(__m512bh)_mm512_set1_epi32(A),(__m512bh)_mm512_set1_epi32(B));
  return _mm512_cvtss_f32(c);
}
static uint64_t s=88172645463325252ull; static uint32_t rnd(void){s^=s<<13;s^=s>>7;s^=s<<17;return (uint32_t)s;}
static uint16_t rbf(int mode){ uint32_t r=rnd(); uint16_t sign=(r&1)<<15; int e;
  if(mode==0) e=120+(rnd()%16); else if(mode==1) e=(rnd()%255); else if(mode==2) e=(rnd()%70); else e=60+rnd()%8;
  return sign | (e<<7) | ((rnd())&0x7f);}
int main(void){
  for (int flushp=0; flushp<2; flushp++){
  long mism=0,n=0,nan=0;
  for(int mode=0;mode<4;mode++) for(long t=0;t<2000000;t++){
    uint16_t a0=rbf(mode),a1=rbf(mode),b0=rbf(mode),b1=rbf(mode);
    float acc; uint32_t r=rnd();
    if (mode>=2) acc = f_of((r&0x80000000u)|(rnd()%0x02000000u)); else acc=f_of(u_of(bf(rbf(0)))^ (rnd()&0xffff));
    if (mode==1 && (r&2)) acc = f_of(rnd());
    float h=hw(acc,a0,a1,b0,b1), m=model(acc,a0,a1,b0,b1,flushp); n++;
    if (isnan(m)||isnan(h)) { nan++; if (isnan(m)!=isnan(h)) mism++; continue;}
    if(u_of(m)!=u_of(h)) { if(mism<5) printf("flushp%d mode%d acc=%a a=(%a,%a) b=(%a,%a) hw=%a model=%a\n",flushp,mode,acc,bf(a0),bf(a1),bf(b0),bf(b1),h,m); mism++;}
  }
  printf("flush products %d: n=%ld nan-cases=%ld mismatches %ld\n",flushp,n,nan,mism);
  }
  printf("acc=2^-126, p=2^-127: hw %a\n", hw(0x1p-126f, u_of(0x1p-63f)>>16,0,u_of(0x1p-64f)>>16,0));
  printf("acc=2^-125, p=-2^-126 (result normal 2^-126): hw %a\n", hw(0x1p-125f, u_of(-0x1p-63f)>>16,0,u_of(0x1p-63f)>>16,0));
  printf("acc=1.5*2^-126, p=-2^-126 (result denormal): hw %a\n", hw(0x1.8p-126f, u_of(-0x1p-63f)>>16,0,u_of(0x1p-63f)>>16,0));
  printf("p_odd=2^100*2^100=2^200, p_even=-2^200: hw %a (NaN: products overflow)\n", hw(1.0f, u_of(0x1p100f)>>16,u_of(0x1p100f)>>16,u_of(-0x1p100f)>>16,u_of(0x1p100f)>>16));
  return 0;
}
