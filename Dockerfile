# One image recipe for every function: docker build --build-arg FUNCTION=llm_proxy .
# (sam build passes FUNCTION from each function's Metadata.DockerBuildArgs in template.yaml.)
FROM public.ecr.aws/lambda/python:3.12

ARG FUNCTION
RUN test -n "${FUNCTION}" || (echo "build arg FUNCTION is required" && false)

# The shared packages from layers/ (the wire contracts and the common code): container images cannot
# attach Lambda layers, so they are copied in. constraints.txt pins every indirect dependency, the same
# pins CI tests with (tests/image/ installs this exact set on Python 3.12 and invokes each handler with
# the real events).
COPY layers/contracts /tmp/layers/contracts
COPY layers/common /tmp/layers/common
COPY constraints.txt /tmp/constraints.txt
COPY functions/${FUNCTION}/requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt -r /tmp/requirements.txt /tmp/layers/contracts /tmp/layers/common \
    && rm -rf /tmp/layers /tmp/requirements.txt /tmp/constraints.txt

COPY functions/${FUNCTION}/ ${LAMBDA_TASK_ROOT}/${FUNCTION}/

# No CMD: template.yaml sets each function's handler (ImageConfig.Command: <function>.app.handler).
# To run an image by hand: docker run IMAGE llm_proxy.app.handler
