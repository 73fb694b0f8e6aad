export PYTHONUNBUFFERED=1; mkdir -p $OUT/rep
c=(--task denoise --preset cuda --iters 10000 --every 50 --device cuda --out $OUT/rep --lipschitz 1.4)
for img in image_Peppers512rgb image_House256rgb; do for v in vanilla controlled; do
 timeout 320 python3 -m benchmarks.reproduce "${c[@]}" --images .gpu_data/$img.png --variants $v > $OUT/rep/log_${img}_$v.txt 2>&1 & done; done
wait; cat $OUT/rep/log_*; cd $OUT && tar czf rep.tgz rep && rm -rf rep
